"""An in-memory adapter: a real adapter with no platform behind it, for tests, benchmarks and transcripts."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bot.core import Bot
from bot.messages import Artifact, Author, ConversationKey, Message


@dataclass
class Event:
    """One thing the bot did back on the 'platform'."""

    kind: str
    text: str = ""
    artifact: Artifact | None = None
    fraction: float | None = None


@dataclass
class MemoryReply:
    """Records every reply action in order."""

    events: list[Event] = field(default_factory=list)

    async def send(self, text: str) -> None:
        """Record a posted message."""
        self.events.append(Event("send", text))

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Record each chunk, then the whole streamed message."""
        parts: list[str] = []
        async for chunk in chunks:
            parts.append(chunk)
            self.events.append(Event("chunk", chunk))
        text = "".join(parts)
        self.events.append(Event("stream", text))
        return text

    async def edit(self, text: str) -> None:
        """Record an edit of the last message."""
        self.events.append(Event("edit", text))

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Record a posted file."""
        self.events.append(Event("attach", caption, artifact=artifact))

    async def progress(self, fraction: float, note: str = "") -> None:
        """Record a progress update."""
        self.events.append(Event("progress", note, fraction=fraction))

    async def error(self, text: str) -> None:
        """Record an error explanation."""
        self.events.append(Event("error", text))

    @property
    def texts(self) -> list[str]:
        """What a user would read, in order: messages, finished streams, edits and errors."""
        return [event.text for event in self.events if event.kind in {"send", "stream", "edit", "error"}]


class MemoryAdapter:
    """Sends messages to the bot as named users in named conversations and keeps what came back."""

    name = "memory"

    def __init__(self, bot: Bot, workspace: str = "w1") -> None:
        self.bot = bot
        self.workspace = workspace
        self._ids = itertools.count(1)

    def message(
        self,
        text: str,
        user: str = "alice",
        conversation: str = "c1",
        *,
        admin: bool = False,
        dm: bool = False,
        nsfw: bool = False,
    ) -> Message:
        """Build the Message a platform event would become."""
        key = ConversationKey("memory", self.workspace, conversation, "")
        author = Author(user, user.title(), is_admin=admin)
        return Message(key, author, text, id=str(next(self._ids)), is_dm=dm, nsfw=nsfw)

    async def send(self, text: str, user: str = "alice", conversation: str = "c1", **flags: bool) -> MemoryReply:
        """Deliver one message and wait for the bot's whole answer."""
        reply = MemoryReply()
        await self.bot.handle(self.message(text, user, conversation, **flags), reply)
        return reply

    async def say(self, text: str, user: str = "alice", conversation: str = "c1", **flags: bool) -> list[str]:
        """Deliver one message and return what the user would read."""
        return (await self.send(text, user, conversation, **flags)).texts

    async def run(self, bot: Bot) -> None:
        """Nothing to listen to: the test drives it."""
        await asyncio.sleep(0)

    async def stop(self) -> None:
        """Nothing to stop."""

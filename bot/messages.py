"""Platform-neutral value types: who said what where, and what the bot produced."""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Author:
    """The person (or bot) who wrote a message."""

    id: str
    name: str
    is_admin: bool = False
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with an incoming message."""

    filename: str
    mime_type: str
    url: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """The unit of history: a thread, a reply chain, a DM channel or a console session."""

    platform: str
    workspace: str
    channel: str
    thread: str = ""

    def __str__(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread}"

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        """The key `str(key)` wrote (as stored with a job): "platform:workspace:channel:thread"."""
        platform, workspace, channel, thread = (text.split(":", 3) + ["", "", ""])[:4]
        return cls(platform, workspace, channel, thread)

    @property
    def channel_key(self) -> str:
        """"platform:workspace:channel": the channel, whichever thread or session of it."""
        return f"{self.platform}:{self.workspace}:{self.channel}"

    @property
    def scope(self) -> str:
        """The server/workspace this conversation belongs to (learning and settings are per scope).

        A DM (no workspace) is its own scope, so one person's DM wording never reaches another.
        """
        return f"{self.platform}:{self.workspace}" if self.workspace else f"{self.platform}:dm:{self.channel}"


@dataclass(frozen=True, slots=True)
class Message:
    """One incoming message, already translated from the platform's payload."""

    conversation: ConversationKey
    author: Author
    text: str
    id: str = ""
    mentions: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    is_dm: bool = False
    # The platform marks the channel NSFW (age-restricted); explicit content still needs the server's opt-in.
    nsfw: bool = False
    created_at: float = field(default_factory=time.time)

    @property
    def platform(self) -> str:
        """The platform name: discord, slack, console, memory."""
        return self.conversation.platform

    @property
    def user_key(self) -> str:
        """The author's id, unique across platforms."""
        return f"{self.conversation.platform}:{self.author.id}"


@dataclass(frozen=True, slots=True)
class Turn:
    """One entry of a prompt handed to a text backend."""

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Artifact:
    """A generated file: bytes plus what it is and where it came from."""

    data: bytes
    mime_type: str
    filename: str
    metadata: Mapping[str, str] = field(default_factory=dict)


_SLUG_WORDS = re.compile(r"[a-z0-9]+")
SLUG_CHARS = 40


def slug(text: str, fallback: str = "file") -> str:
    """A short file-name-safe summary of a prompt: "A red fox, in snow!" → "a-red-fox-in-snow"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = _SLUG_WORDS.findall(ascii_text)
    out = ""
    for word in words:
        if len(out) + len(word) + 1 > SLUG_CHARS:
            break
        out = f"{out}-{word}" if out else word
    return out or fallback


def named_for_job(artifact: Artifact, job_id: str, prompt: str, kind: str) -> Artifact:
    """The artifact renamed "<prompt slug>-<job id>-seed<N>…": a folder of results can be told apart, and /forget-me finds them."""
    rest = artifact.filename.removeprefix("atelier-")
    rest = f"seed{rest}" if rest[:1].isdigit() else rest
    return replace(artifact, filename=f"{slug(prompt, kind)}-{job_id}-{rest}")

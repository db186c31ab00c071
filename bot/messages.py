"""Platform-neutral value types: who said what where, and what the bot produced."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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

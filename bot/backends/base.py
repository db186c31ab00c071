"""Backend protocols: what the core asks of text, image and music generators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.messages import Turn


@dataclass(frozen=True, slots=True)
class TextOptions:
    """Sampling options for one text reply."""

    max_tokens: int = 256
    temperature: float = 0.8
    seed: int | None = None
    scope: str = ""


@runtime_checkable
class TextBackend(Protocol):
    """Streams a reply to a prompt of turns, chunk by chunk."""

    name: str
    context_tokens: int

    def count_tokens(self, text: str) -> int:
        """How many tokens of this backend's context `text` takes."""
        ...

    def stream(self, turns: Sequence[Turn], options: TextOptions) -> AsyncIterator[str]:
        """Yield the reply's text in pieces as they are produced."""
        ...

    async def close(self) -> None:
        """Release models, threads and connections."""
        ...


@runtime_checkable
class LearningBackend(Protocol):
    """A backend that learns from what users say, and can unlearn it exactly (/forget-me)."""

    async def learn(self, texts: Sequence[tuple[str, str]]) -> None:
        """Learn from (scope, text) pairs."""
        ...

    async def forget(self, texts: Sequence[tuple[str, str]]) -> None:
        """Unlearn (scope, text) pairs that were learned before."""
        ...


class BackendLoadError(Exception):
    """A backend could not be loaded; the message says why in operator terms."""

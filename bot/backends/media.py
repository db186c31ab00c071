"""Image and music backend protocols, their requests, and the progress callback contract."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.messages import Artifact

# Called by a backend, from any thread, as work advances: progress(fraction, note).
# It raises JobCancelled once the job is cancelled or timed out, so backends stop between steps.
Progress = Callable[[float, str], None]


class JobCancelled(Exception):
    """Raised inside a backend's progress callback when its job must stop now."""


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """What /imagine asks for."""

    prompt: str
    seed: int
    width: int = 512
    height: int = 512
    n: int = 1
    negative: str = ""
    # Non-zero: variations of the picture drawn with `seed` (picture i gets variation + i), not new pictures.
    variation: int = 0
    # None: the backend's own defaults (the embedded backend has no steps or guidance).
    steps: int | None = None
    guidance: float | None = None


@dataclass(frozen=True, slots=True)
class MusicRequest:
    """What /compose asks for."""

    prompt: str
    seed: int
    duration_s: float = 10.0
    tempo: int | None = None
    guidance: float | None = None


@runtime_checkable
class ImageBackend(Protocol):
    """Makes pictures from a prompt."""

    name: str

    supports_variations: bool

    async def generate(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
        """Return `request.n` images (PNG with provenance text chunks)."""
        ...

    async def close(self) -> None:
        """Release models and threads."""
        ...


@runtime_checkable
class MusicBackend(Protocol):
    """Makes music from a prompt."""

    name: str

    async def generate(self, request: MusicRequest, progress: Progress) -> list[Artifact]:
        """Return the audio (WAV with an INFO chunk) first, then any companion files (e.g. MIDI)."""
        ...

    async def close(self) -> None:
        """Release models and threads."""
        ...

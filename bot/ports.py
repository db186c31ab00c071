"""The core's own interfaces: how it answers (Reply, JobControls) and what a platform connection is (Adapter).

They live with the core, not with the adapters, so that the core depends on nothing outside it;
adapters implement them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bot.messages import Artifact

if TYPE_CHECKING:
    from bot.core import Bot


@runtime_checkable
class Reply(Protocol):
    """What the core may do back on the platform, in answer to one message."""

    async def send(self, text: str) -> None:
        """Post a new message."""
        ...

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Post a message that grows as chunks arrive (paced to the platform); return the full text."""
        ...

    async def edit(self, text: str) -> None:
        """Replace the text of the last message this reply posted."""
        ...

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Post a generated file."""
        ...

    async def progress(self, fraction: float, note: str = "") -> None:
        """Show how far a long job has got (0.0 to 1.0)."""
        ...

    async def error(self, text: str) -> None:
        """Tell the user, in one line, what went wrong and what to do."""
        ...


@runtime_checkable
class JobControls(Protocol):
    """A Reply that can put buttons on a job's messages: cancel while it runs, re-roll and variations after."""

    def bind_job(self, job_id: str, kind: str, variations: int) -> None:
        """Learn the job this reply answers; `variations` is how many of its pictures can be varied (0: none)."""
        ...


@runtime_checkable
class Adapter(Protocol):
    """One platform connection."""

    name: str

    async def run(self, bot: Bot) -> None:
        """Serve events until stopped (or, for the console, until end of input)."""
        ...

    async def stop(self) -> None:
        """Stop taking events; let in-flight replies finish."""
        ...

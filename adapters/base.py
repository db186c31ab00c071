"""The Adapter protocol and the Reply handle the core answers through."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection
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


# How long a stopping adapter lets answers in progress finish before cancelling them.
STOP_GRACE_S = 20.0


async def finish_in_flight(tasks: Collection[asyncio.Task[None]], grace: float = STOP_GRACE_S) -> None:
    """Let in-flight answers finish for a while, then cancel the rest (Ctrl-C must not wait on a slow model)."""
    if not tasks:
        return
    _, late = await asyncio.wait(set(tasks), timeout=grace)
    for task in late:
        task.cancel()
    if late:
        logging.getLogger(__name__).warning("stopped %d answer(s) still in progress after %.0fs", len(late), grace)
        await asyncio.gather(*late, return_exceptions=True)

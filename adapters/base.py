"""What adapters share: the core's protocols (defined in bot/ports.py) and a clean stop for in-flight answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from bot.ports import Adapter, JobControls, Reply

__all__ = ["STOP_GRACE_S", "Adapter", "JobControls", "Reply", "finish_in_flight"]

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

"""Connecting to a platform: retry what time can fix, with backoff and one log line per try; give up on the rest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0


async def keep_trying(connect: Callable[[], Awaitable[T]], service: str, check: str,
                      transient: Callable[[BaseException], str | None]) -> T:  # fmt: skip
    """Await `connect()` until it succeeds. `transient(error)` names a passing fault (retried, doubling the wait up to
    a minute) or returns None for one retrying cannot fix, which is raised as it is (a refused token)."""
    delay = FIRST_DELAY_S
    while True:
        try:
            return await connect()
        except Exception as error:
            reason = transient(error)
            if reason is None:
                raise
            log.warning("%s is unreachable (%s); retrying in %gs. Check %s.", service, reason, delay, check)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)


def network_fault(error: BaseException) -> str | None:
    """A connection that failed or timed out, in one line; None for anything else."""
    if isinstance(error, (aiohttp.ClientConnectionError, OSError, TimeoutError)):
        text = " ".join(str(error).split()) or error.__class__.__name__
        return text[:200]
    return None

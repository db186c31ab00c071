"""The model's stream on its way to the user: failures and stalls in plain words; the process settled after loading."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
from collections.abc import AsyncIterator

from bot.errors import BackendFailed, BotError

log = logging.getLogger(__name__)


async def guarded(chunks: AsyncIterator[str], timeout: float) -> AsyncIterator[str]:
    """Pass a backend's chunks through, turning its failures and stalls into a user-facing error.

    The time limit is a budget for the waits on the backend only, never the adapter's own
    pacing between chunks (that happens while this generator is suspended at `yield`).
    """
    remaining = timeout
    clock = asyncio.get_running_loop().time
    iterator = chunks.__aiter__()
    try:
        while True:
            started = clock()
            try:
                async with asyncio.timeout(remaining):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise BackendFailed(f"The model took longer than {timeout:g}s to answer; please try again.") from None
            except BotError:
                raise
            except Exception as error:
                log.exception("text backend failed")
                raise BackendFailed() from error
            remaining -= clock() - started
            yield chunk
    finally:
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


def settle_memory() -> None:
    """After loading: keep what lives as long as the process out of the collector, and give freed heap back."""
    # Everything loaded so far (torch, models, the corpus) stays; keeping it out of the cyclic
    # collector's scans removes its occasional long pauses on the loop.
    gc.collect()
    gc.freeze()
    # glibc keeps the pages that loading freed (~10-50 MiB) unless asked to return them.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)

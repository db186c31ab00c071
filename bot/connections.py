"""Connection limits for the GPU host: slow or idle clients are closed so they cannot crowd out real ones."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)
# A client gets this long to send a whole request head, and this long between requests on a kept-alive connection.
HEADER_TIMEOUT_S = 10.0
# And this long to send a whole body once its head has arrived.
BODY_TIMEOUT_S = 30.0
# File descriptors kept back for what the process itself opens (models, logs, outgoing calls) and for one
# accept batch: asyncio accepts up to `backlog` connections before any of them reaches the guard, and one
# accept() failing for lack of descriptors stops all accepting for a second.
ACCEPT_BATCH = 64
RESERVED_FDS = 128 + ACCEPT_BATCH


def raise_open_file_limit() -> int:
    """Lift the soft open-file limit to the hard one (the usual 1,024 is small for a server); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class ConnectionGuard:
    """Closes connections that sit without a request in progress, and sheds the oldest idle ones near the fd limit.

    Every accepted connection gets `header_timeout` to send a whole request head, and the same again after each
    response; a request in progress is never cut. When open connections near the process's file limit, the
    oldest idle ones are closed at once, so accept() never fails and a client with a real request gets in.
    """

    def __init__(self, header_timeout: float = HEADER_TIMEOUT_S) -> None:
        self.header_timeout = header_timeout
        self.capacity = 0  # set from the open-file limit when serving starts (after the limit was raised)
        self._idle_since: dict[RequestHandler, float] = {}  # insertion order: oldest first
        self._busy: set[RequestHandler] = set()
        self.closed_idle = 0
        self.shed = 0

    def protocol_factory(self, server: web.Server) -> Callable[[], RequestHandler]:
        """Wrap aiohttp's protocol factory so every new connection is tracked from its first byte."""
        self.capacity = max(16, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - RESERVED_FDS)

        def make() -> RequestHandler:
            handler = server()
            self._track(handler)
            if len(self._idle_since) + len(self._busy) > self.capacity:
                self._shed()
            return handler

        return make

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Mark the connection busy while its request runs, then idle again with a fresh deadline."""
        protocol = request.protocol
        self._idle_since.pop(protocol, None)
        self._busy.add(protocol)
        try:
            return await handler(request)
        finally:
            self._busy.discard(protocol)
            if protocol.transport is not None:
                self._track(protocol)

    def _track(self, handler: RequestHandler) -> None:
        self._idle_since.pop(handler, None)
        self._idle_since[handler] = time.monotonic()
        asyncio.get_running_loop().call_later(self.header_timeout, self._expire, handler)

    def _expire(self, handler: RequestHandler) -> None:
        since = self._idle_since.get(handler)
        if since is None:
            return  # busy now (its deadline restarts when the request ends) or already gone
        if handler.transport is None:
            del self._idle_since[handler]
        elif time.monotonic() - since >= self.header_timeout - 0.01:
            self.closed_idle += 1
            self._close(handler)

    def _shed(self) -> None:
        """Close idle connections, oldest first, until there is room again (and a little more, so bursts shed in batches)."""
        target = int(self.capacity * 0.9)
        gone_before = time.monotonic() - 1.0  # no transport yet is a connection being accepted; after a second, a closed one
        for handler, since in list(self._idle_since.items()):
            if len(self._idle_since) + len(self._busy) <= target:
                break
            if handler.transport is not None:
                self.shed += 1
                self._close(handler)
            elif since < gone_before:
                del self._idle_since[handler]
        if self.shed and self.shed % 1000 == 1:
            log.warning("open connections reached %d: closing the oldest idle ones (%d so far)", self.capacity, self.shed)

    def _close(self, handler: RequestHandler) -> None:
        self._idle_since.pop(handler, None)
        if handler.transport is not None:
            handler.transport.abort()


async def read_body(request: web.Request) -> bytes:
    """The whole body, or TimeoutError when the client takes longer than BODY_TIMEOUT_S to send it."""
    async with asyncio.timeout(BODY_TIMEOUT_S):
        return await request.read()

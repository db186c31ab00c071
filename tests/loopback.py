"""The base of the fake platforms: an aiohttp server on a free 127.0.0.1 port, and its websockets."""

from __future__ import annotations

from aiohttp import web


class LoopbackServer:
    """Starts and stops an aiohttp app on loopback; subclasses add their routes in `routes`."""

    def __init__(self, port: int = 0) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self.port = port  # 0: any free one

    def routes(self, app: web.Application) -> None:
        """Add the fake's routes."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close open websockets, then the server."""
        for socket in list(self.sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

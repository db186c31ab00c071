"""A small fake Discord on 127.0.0.1: the REST routes the bot uses and a gateway websocket.

It records every call, so tests read like transcripts: what the bot posted, edited and when.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.discord_payloads import BOT_ID, GUILD_ID, guild_payload, user
from tests.loopback import LoopbackServer

APPLICATION_ID = 4242


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses a body only when Content-Type is exactly "application/json" (no charset).
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json", **(headers or {})})


@dataclass
class Call:
    """One REST request the bot made."""

    method: str
    path: str
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeDiscord(LoopbackServer):
    """REST under /api/v10 and a gateway at /gateway, speaking just enough of Discord's protocol."""

    def __init__(self, port: int = 0, guilds: list[dict[str, Any]] | None = None, recommended_shards: int = 1) -> None:
        super().__init__(port)
        self.guilds = guilds or [guild_payload()]
        self.recommended_shards = recommended_shards
        self.shards: dict[web.WebSocketResponse, tuple[int, int]] = {}  # each connection's [shard id, shard count]
        self.calls: list[Call] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.identified = asyncio.Event()
        self.resumed = asyncio.Event()
        self.identify_count = 0
        self.ready = asyncio.Event()
        self.interaction_channels: dict[str, int] = {}  # interaction token → its channel
        self.posted_by_users: dict[int, dict[str, Any]] = {}  # messages people sent (by id), for GET
        self.expired_tokens: set[str] = set()  # tokens past their 15 minutes: the webhook answers 401 (50027)
        self.callbacks: list[dict[str, Any]] = []  # interaction responses, in order
        self.rate_limit_next: dict[str, float] = {}  # "POST /channels/200/messages" → retry_after seconds
        self._ids = itertools.count(10_000)
        self._seq = itertools.count(1)

    # --- lifecycle -----------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        """The fake's endpoints."""
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)

    @property
    def rest_base(self) -> str:
        """What discord.http.Route.BASE should be."""
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What DiscordWebSocket.DEFAULT_GATEWAY should be."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- gateway -------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event to the bot (a created message is also kept, so the bot can fetch it later)."""
        if event == "MESSAGE_CREATE":
            self.posted_by_users[int(data["id"])] = data
        payload = {"op": 0, "t": event, "s": next(self._seq), "d": data}
        for socket in self._sockets_for(data.get("guild_id")):
            await socket.send_str(json.dumps(payload))

    def _sockets_for(self, guild_id: str | None) -> list[web.WebSocketResponse]:
        """The connections Discord would send a server's events on: its shard's (DMs go to shard 0)."""
        def serves(socket: web.WebSocketResponse) -> bool:
            shard, count = self.shards.get(socket, (0, 1))
            return (int(guild_id) >> 22) % count == shard if guild_id else shard == 0

        return [socket for socket in self.sockets if serves(socket)]

    async def interact(self, data: dict[str, Any]) -> None:
        """Send an INTERACTION_CREATE (remembering where its follow-ups belong)."""
        self.interaction_channels[data["token"]] = int(data["channel_id"])
        await self.dispatch("INTERACTION_CREATE", data)

    async def reconnect(self) -> None:
        """Ask the bot to reconnect (op 7), as Discord does when it moves a session; the bot should RESUME."""
        for socket in list(self.sockets):
            await socket.send_str(json.dumps({"op": 7, "d": None}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                if message["op"] == 1:
                    await socket.send_str(json.dumps({"op": 11}))
                elif message["op"] == 2:
                    self.identify_count += 1
                    self.shards[socket] = tuple(message["d"].get("shard") or (0, 1))  # type: ignore[assignment]
                    self.identified.set()
                    await self._ready(socket)
                elif message["op"] == 6:
                    self.resumed.set()
                    await socket.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": next(self._seq), "d": {}}))
        finally:
            self.sockets.remove(socket)
            self.shards.pop(socket, None)
        return socket

    async def _ready(self, socket: web.WebSocketResponse) -> None:
        shard, count = self.shards.get(socket, (0, 1))
        mine = [guild for guild in self.guilds if (int(guild["id"]) >> 22) % count == shard]
        ready = {
            "v": 10, "user": user(BOT_ID, "atelier", bot=True), "guilds": [{"id": g["id"], "unavailable": True} for g in mine],
            "session_id": f"fake-session-{shard}", "resume_gateway_url": self.gateway_url, "shard": [shard, count],
            "application": {"id": str(APPLICATION_ID), "flags": 0},
        }  # fmt: skip
        await socket.send_str(json.dumps({"op": 0, "t": "READY", "s": next(self._seq), "d": ready}))
        for guild in mine:
            await socket.send_str(json.dumps({"op": 0, "t": "GUILD_CREATE", "s": next(self._seq), "d": guild}))
        self.ready.set()

    # --- REST ----------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body = await self._body(request)
        self.calls.append(Call(request.method, path, body))
        route = f"{request.method} {path}"
        retry_after = self.rate_limit_next.pop(route, None)
        if retry_after is not None:
            # Discord's own 429s come through its proxy (Via); discord.py treats one without it as a ban.
            headers = {"Retry-After": str(retry_after), "X-RateLimit-Scope": "user", "Via": "1.1 google"}
            payload = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
            return _json(payload, status=429, headers=headers)
        parts = path.strip("/").split("/")
        if route == "GET /gateway/bot":
            limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
            return _json({"url": self.gateway_url, "shards": self.recommended_shards, "session_start_limit": limit})
        if route == "GET /users/@me":
            return _json(user(BOT_ID, "atelier", bot=True))
        if route == "GET /oauth2/applications/@me":
            return _json({"id": str(APPLICATION_ID), "name": "Atelier", "icon": None, "description": "",
                          "rpc_origins": [], "bot_public": True, "bot_require_code_grant": False,
                          "verify_key": "0" * 64, "flags": 0, "owner": user(1, "owner")})  # fmt: skip
        if parts[0] == "applications" and parts[-1] == "commands":
            return _json([{**command, "id": str(next(self._ids)), "application_id": str(APPLICATION_ID),
                                       "version": "1"} for command in body.get("json", [])])  # fmt: skip
        if parts[0] == "channels" and parts[-1] == "typing":
            return web.Response(status=204)
        if parts[0] == "interactions" and parts[-1] == "callback":
            return self._callback(parts[1], parts[2], body.get("json", {}))
        if parts[0] == "webhooks":
            if parts[2] in self.expired_tokens:
                return _json({"message": "Invalid Webhook Token", "code": 50027}, status=401)
            channel_id = self.interaction_channels.get(parts[2], 0)
            return self._message(request.method, channel_id, parts[4:] if len(parts) > 3 else [], body)
        if parts[0] == "channels" and parts[-1] == "threads" and request.method == "POST":
            return await self._thread(int(parts[1]), body.get("json", {}))
        if parts[0] == "channels" and parts[2:3] == ["messages"]:
            return self._message(request.method, int(parts[1]), parts[3:], body)
        return _json({"message": f"fake Discord has no route {route}", "code": 0}, status=404)

    def _message(self, method: str, channel_id: int, rest: list[str], body: dict[str, Any]) -> web.Response:
        content = body.get("json", {})
        if method == "POST" and not rest:
            message_id = next(self._ids)
            reference = content.get("message_reference")
            self.messages[message_id] = {
                "id": str(message_id), "channel_id": str(channel_id), "guild_id": self._guild_of(channel_id),
                "author": user(BOT_ID, "atelier", bot=True), "content": content.get("content") or "",
                "timestamp": "2026-11-26T12:00:00+00:00", "edited_timestamp": None, "tts": False,
                "mention_everyone": False, "mentions": [], "mention_roles": [], "embeds": [], "pinned": False, "type": 0,
                "attachments": [{"id": str(next(self._ids)), "filename": name, "size": 1, "url": f"https://cdn/{name}",
                                 "proxy_url": f"https://cdn/{name}"} for name in body.get("files", [])],
                "components": content.get("components") or [], "flags": content.get("flags", 0),
                **({"message_reference": reference} if reference else {}),
            }  # fmt: skip
            return _json(self.messages[message_id])
        if method == "GET" and len(rest) == 1:
            found = self.messages.get(int(rest[0])) or self.posted_by_users.get(int(rest[0]))
            return _json(found) if found is not None else _json({"message": "Unknown Message", "code": 10008}, status=404)
        if method == "PATCH" and len(rest) == 1:
            stored = self.messages[int(rest[0])]
            for key in ("content", "components"):
                if key in content:
                    stored[key] = content[key] or ([] if key == "components" else "")
            return _json(stored)
        if method == "DELETE" and len(rest) == 1:
            self.messages.pop(int(rest[0]), None)
            return web.Response(status=204)
        return _json({"message": "unsupported", "code": 0}, status=404)

    def _guild_of(self, channel_id: int) -> str:
        return next((guild["id"] for guild in self.guilds if any(c["id"] == str(channel_id) for c in guild["channels"])),
                    str(GUILD_ID))  # fmt: skip

    def _callback(self, interaction_id: str, token: str, content: dict[str, Any]) -> web.Response:
        self.callbacks.append({"interaction": interaction_id, "token": token, **content})
        data = content.get("data") or {}
        interaction = {"id": interaction_id, "type": 2, "response_message_loading": content.get("type") == 5,
                       "response_message_ephemeral": bool(data.get("flags", 0) & 64)}  # fmt: skip
        return _json({"interaction": interaction, "resource": {"type": content.get("type", 4)}})

    async def _thread(self, channel_id: int, content: dict[str, Any]) -> web.Response:
        thread_id = next(self._ids)
        thread = {"id": str(thread_id), "type": 11, "name": content.get("name", ""), "parent_id": str(channel_id),
                  "guild_id": str(GUILD_ID), "owner_id": str(BOT_ID), "message_count": 0, "member_count": 1,
                  "rate_limit_per_user": 0, "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                  "archive_timestamp": "2026-11-26T12:00:00+00:00", "locked": False}}  # fmt: skip
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return _json(thread)

    def followups(self, token: str) -> list[Call]:
        """Messages the bot sent through an interaction's follow-up webhook."""
        return [c for c in self.calls if c.method == "POST" and c.path == f"/webhooks/{APPLICATION_ID}/{token}"]

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return {"json": await request.json()}
        if request.content_type.startswith("multipart/"):
            found: dict[str, Any] = {"files": []}
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":  # type: ignore[union-attr]
                    found["json"] = json.loads(await part.text())  # type: ignore[union-attr]
                elif part.filename:  # type: ignore[union-attr]
                    found["files"].append(part.filename)  # type: ignore[union-attr]
                    await part.read()  # type: ignore[union-attr]
            return found
        return {}

    # --- what tests read -----------------------------------------------------------------

    def posts(self, channel_id: int) -> list[Call]:
        """Messages the bot created in a channel."""
        return [c for c in self.calls if c.method == "POST" and c.path == f"/channels/{channel_id}/messages"]

    def edits(self, channel_id: int, message_id: int) -> list[Call]:
        """Edits the bot made to one message."""
        return [c for c in self.calls if c.method == "PATCH" and c.path == f"/channels/{channel_id}/messages/{message_id}"]

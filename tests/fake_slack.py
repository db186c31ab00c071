"""A recording fake of the Slack Web API on 127.0.0.1, with a Socket Mode websocket and response_urls.

Tests point the adapter's client at `api_base_url` and read `calls` like a transcript.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.loopback import LoopbackServer

BOT_USER = "UBOT"
REVOKED_TOKEN = "xoxb-revoked"  # a token the fake refuses, as Slack refuses a revoked one
TEAM = "T1"
USERS: dict[str, dict[str, Any]] = {
    "UALICE": {"id": "UALICE", "name": "alice", "profile": {"display_name": "Alice"}},
    "UBOB": {"id": "UBOB", "name": "bob", "profile": {"display_name": "Bob"}},
    "UADMIN": {"id": "UADMIN", "name": "ada", "is_admin": True, "profile": {"display_name": "Ada"}},
    BOT_USER: {"id": BOT_USER, "name": "atelier", "is_bot": True, "profile": {"display_name": "Atelier"}},
}


@dataclass
class Call:
    """One Web API request the bot made."""

    method: str
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeSlack(LoopbackServer):
    """The Web API methods the adapter uses, file uploads, response_urls and Socket Mode."""

    def __init__(self, streaming: bool = False, port: int = 0) -> None:
        super().__init__(port)
        self.streaming = streaming  # whether chat.startStream exists in this "workspace"
        self.calls: list[Call] = []
        self.messages: dict[str, dict[str, Any]] = {}  # ts → message
        self.uploads: dict[str, bytes] = {}
        self.responses: list[dict[str, Any]] = []  # what was POSTed to response_urls
        self.rate_limit_next: dict[str, int] = {}  # method → Retry-After seconds, once
        self.acks: list[str] = []  # Socket Mode envelope ids the bot acknowledged
        self.connected = asyncio.Event()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        """The fake's endpoints."""
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_get("/socket", self._socket)

    @property
    def base(self) -> str:
        """The host, for response_urls."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base_url(self) -> str:
        """What adapters.slack.api_base_url should be."""
        return f"{self.base}/api/"

    # --- Web API -------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)  # some methods send their arguments as query parameters
        if request.method == "POST" and request.content_type == "application/json":
            args.update(await request.json())
        elif request.method == "POST":
            args.update(await request.post())
        self.calls.append(Call(method, args))
        if request.headers.get("Authorization", "").endswith(REVOKED_TOKEN):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        retry_after = self.rate_limit_next.pop(method, None)
        if retry_after is not None:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response({"ok": True, **handler(args)})

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"user_id": BOT_USER, "team_id": TEAM, "bot_id": "BBOT", "user": "atelier", "team": "Test", "url": self.base}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"user": USERS.get(str(args.get("user")), {"id": args.get("user"), "name": "someone"})}

    def _new_message(self, args: dict[str, Any], text: str) -> dict[str, Any]:
        ts = f"{1_800_000_000 + next(self._ts)}.000100"
        blocks = args.get("blocks")
        message = {"ts": ts, "channel": args.get("channel"), "thread_ts": args.get("thread_ts") or None, "text": text,
                   "user": BOT_USER, "blocks": json.loads(blocks) if isinstance(blocks, str) else blocks or []}  # fmt: skip
        self.messages[ts] = message
        return message

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._new_message(args, str(args.get("text", "")))
        return {"channel": args.get("channel"), "ts": message["ts"], "message": message}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": f"{1_800_000_000 + next(self._ts)}.000200"}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.messages[str(args["ts"])]
        message["text"] = str(args.get("text", ""))
        blocks = args.get("blocks")
        message["blocks"] = json.loads(blocks) if isinstance(blocks, str) else blocks or []
        return {"channel": args.get("channel"), "ts": args["ts"]}

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        self.messages.pop(str(args["ts"]), None)
        return {"channel": args.get("channel"), "ts": args["ts"]}

    def _chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.streaming:
            return {"ok": False, "error": "unknown_method"}
        message = self._new_message(args, str(args.get("markdown_text") or ""))
        return {"channel": args.get("channel"), "ts": message["ts"]}

    def _chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        self.messages[str(args["ts"])]["text"] += str(args.get("markdown_text") or "")
        return {"channel": args.get("channel"), "ts": args["ts"]}

    def _chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.messages[str(args["ts"])]
        message["text"] += str(args.get("markdown_text") or "")
        message["stopped"] = True
        return {"channel": args.get("channel"), "ts": args["ts"], "message": message}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids)}"
        return {"upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(args["files"]) if isinstance(args.get("files"), str) else args.get("files", [])
        return {"files": [{"id": f["id"], "title": f.get("title", "")} for f in files]}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/socket"}

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]] = await request.read()
        return web.Response(text=f"OK - {len(self.uploads[request.match_info['file_id']])}")

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append({"id": request.match_info["id"], **(await request.json())})
        return web.Response(text="ok")

    # --- Socket Mode ---------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_str(json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}))
        self.connected.set()
        try:
            async for frame in socket:
                if frame.type == WSMsgType.TEXT:
                    self.acks.append(json.loads(frame.data).get("envelope_id", ""))
        finally:
            self.sockets.remove(socket)
        return socket

    async def push(self, payload: dict[str, Any], kind: str = "events_api", retry_attempt: int = 0) -> str:
        """Send an envelope over Socket Mode; returns its id."""
        envelope_id = f"env-{next(self._ids)}"
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": False,
                    "retry_attempt": retry_attempt, "retry_reason": "timeout" if retry_attempt else ""}  # fmt: skip
        for socket in self.sockets:
            await socket.send_str(json.dumps(envelope))
        return envelope_id

    # --- what tests read -----------------------------------------------------------------

    def named(self, method: str) -> list[Call]:
        """Calls of one Web API method, in order."""
        return [call for call in self.calls if call.method == method]

    def in_thread(self, thread_ts: str) -> list[dict[str, Any]]:
        """The bot's messages in a thread, oldest first."""
        return [m for m in self.messages.values() if m.get("thread_ts") == thread_ts]

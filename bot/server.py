"""The GPU host (`python -m bot serve`): the configured backends over an OpenAI-compatible HTTP API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.backends.base import TextBackend, TextOptions
from bot.backends.media import (
    ImageBackend,
    ImageRequest,
    JobCancelled,
    MusicBackend,
    MusicRequest,
)
from bot.connections import ACCEPT_BATCH, ConnectionGuard, raise_open_file_limit, read_body
from bot.errors import BotError
from bot.job_args import MAX_GUIDANCE, MAX_SEED, MAX_STEPS, MAX_TEMPO, MIN_TEMPO
from bot.messages import Turn
from bot.server_params import ApiError, number, optional_number, prompt_of, turns_of

if TYPE_CHECKING:
    from moderation import Kind, Moderator

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024
# Requests waiting per model beyond those running; past this the host answers 429 at once.
QUEUE_LIMIT = 64
RETRY_AFTER_S = 2
KEEPALIVE_S = 10.0


@dataclass
class Served:
    """One backend the host serves, with its admission control (running slots plus a bounded queue)."""

    name: str
    backend: Any
    slots: int = 1
    waiting: int = 0
    semaphore: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.semaphore = asyncio.Semaphore(self.slots)

    @contextlib.asynccontextmanager
    async def slot(self, response: web.StreamResponse | None = None) -> AsyncIterator[None]:
        """Hold one of the model's slots; while waiting for it, keep a prepared stream alive with SSE comments."""
        self.waiting += 1
        acquire = asyncio.ensure_future(self.semaphore.acquire())
        try:
            while not acquire.done():
                done, _ = await asyncio.wait({acquire}, timeout=KEEPALIVE_S)
                if not done and response is not None:
                    # A client reading with a timeout would otherwise give up (and retry) while we queue it.
                    await response.write(b": waiting for a free slot\n\n")
        except BaseException:
            if acquire.done() and not acquire.cancelled():
                self.semaphore.release()
            else:
                acquire.cancel()
            self.waiting -= 1
            raise
        try:
            yield
        finally:
            self.semaphore.release()
            self.waiting -= 1

    def admit(self) -> None:
        """Refuse at once (429) when the queue is full, rather than letting clients time out."""
        if self.waiting >= QUEUE_LIMIT + self.slots:
            raise ApiError(429, f"{self.name} is busy; retry in {RETRY_AFTER_S}s", "rate_limit_error", {"Retry-After": str(RETRY_AFTER_S)})


def _failure(error: Exception, default: str) -> str:
    """What the client may tell its user: our own errors' one-line messages, nothing from anything else."""
    return error.user_message if isinstance(error, BotError) else default


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


@dataclass
class Listening:
    """A host bound to its address: the aiohttp runner and the listening socket in front of it."""

    runner: web.AppRunner
    listener: asyncio.AbstractServer

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked for a free one)."""
        return int(self.listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, then finish the connections and the app."""
        self.listener.close()
        await self.runner.cleanup()


class Host:
    """The aiohttp application around the served backends."""

    def __init__(self, text: TextBackend | None, image: ImageBackend | None, music: MusicBackend | None,
                 api_key: str | None, slots: dict[str, int] | None = None, moderator: Moderator | None = None) -> None:  # fmt: skip
        # A batching text backend serves many streams at once; the others one request per slot.
        slots = {"text": getattr(text, "concurrency", 1), **(slots or {})}
        self.served = {kind: Served(getattr(backend, "name", kind), backend, slots.get(kind, 1))
                       for kind, backend in (("text", text), ("image", image), ("music", music)) if backend is not None}  # fmt: skip
        self.api_key = api_key
        self.started = time.time()
        # Other clients than the bot can reach the host: with a moderator, it checks every prompt itself.
        self.moderator = moderator
        self.guard = ConnectionGuard()

    async def _moderate(self, text: str, kind: Kind, context: list[str] | None = None, negative: str = "") -> None:
        """Refuse (400, content_policy_violation) what the bot's own moderation would refuse; 503 when it cannot run."""
        if self.moderator is None:
            return
        from moderation.policy import removes_clothing

        if self.moderator.enabled and not self.moderator.available:
            raise ApiError(503, "moderation is not running on this host, so generation is refused", "server_error")
        verdict = await self.moderator.check(text, kind, context or [])
        if not verdict.blocked and negative and await asyncio.to_thread(removes_clothing, negative):
            verdict = await self.moderator.check(f"{text}, nude, naked", kind)  # the picture it asks for
        if verdict.blocked:
            log.info("refused a %s prompt: %s (decided by %s)", kind, verdict.category, verdict.stage)
            raise ApiError(400, verdict.message or f"refused by moderation ({verdict.category})", "content_policy_violation")

    async def listen(self, address: str, port: int, backlog: int = ACCEPT_BATCH) -> Listening:
        """Serve on address:port, every connection watched by the guard (OSError when the port is taken)."""
        raise_open_file_limit()
        runner = web.AppRunner(self.app(), access_log=None, keepalive_timeout=self.guard.header_timeout)
        await runner.setup()
        assert runner.server is not None
        try:
            listener = await asyncio.get_running_loop().create_server(self.guard.protocol_factory(runner.server), address, port, backlog=backlog)
        except OSError:
            await runner.cleanup()
            raise
        return Listening(runner, listener)

    def app(self) -> web.Application:
        """The web application, with auth and error shaping in front of every route."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self.guard.middleware, self._errors, self._browsers, self._auth])
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/images/generations", self.images)
        app.router.add_post("/v1/audio/music", self.music)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return error.response()
        except web.HTTPRequestEntityTooLarge:
            return ApiError(413, f"the request body is over {MAX_BODY_BYTES} bytes").response()
        except web.HTTPException as error:
            return ApiError(error.status, error.reason or "request failed").response()
        except Exception:
            ref = secrets.token_hex(3)
            log.exception("host error %s on %s", ref, request.path)
            return ApiError(500, f"the model failed (ref {ref})", "server_error").response()

    @web.middleware
    async def _browsers(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        # Any web page the operator visits could otherwise drive a keyless host on loopback: browsers send
        # Origin on cross-site requests, and only a form-like content type skips their preflight check.
        if request.headers.get("Origin"):
            raise ApiError(403, "requests from web pages are refused: this API is for programs (send no Origin header)", "permission_error")
        if request.method == "POST" and request.content_type != "application/json":
            raise ApiError(415, "send the body as JSON with Content-Type: application/json")
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if self.api_key and request.path != "/health":
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                raise ApiError(401, "missing or wrong API key; send Authorization: Bearer <key>", "authentication_error")
        return await handler(request)

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            raw = await read_body(request)
        except TimeoutError:
            raise ApiError(408, "the request body arrived too slowly; send it at once") from None
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, nesting past the parser's depth, a huge integer
            raise ApiError(400, "the body is not valid JSON (or is nested too deep, or holds a number too long)") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _model(self, kind: str, body: dict[str, Any]) -> Served:
        served = self.served.get(kind)
        if served is None:
            raise ApiError(404, f"this host serves no {kind} model", "not_found_error")
        model = body.get("model")
        if model not in (None, "", served.name):
            raise ApiError(404, f"unknown model '{model}'; GET /v1/models lists them", "not_found_error")
        served.admit()
        return served

    # --- routes --------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """Liveness and what is loaded (no auth, no secrets)."""
        return web.json_response({"status": "ok", "models": {kind: s.name for kind, s in self.served.items()},
                                  "uptime_s": round(time.time() - self.started)})  # fmt: skip

    async def models(self, request: web.Request) -> web.Response:
        """OpenAI's model list."""
        data = [{"id": s.name, "object": "model", "owned_by": "atelier", "kind": kind,
                 **({"supports_variations": bool(getattr(s.backend, "supports_variations", False))} if kind == "image" else {})}
                for kind, s in self.served.items()]  # fmt: skip
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions, streamed as SSE when asked."""
        body = await self._json(request)
        served = self._model("text", body)
        turns = turns_of(body)
        asked = [turn.text for turn in turns if turn.role == "user"]
        if not asked:
            raise ApiError(400, "'messages' needs at least one user message")
        # The client wrote every turn, the system prompt and earlier "assistant" turns too: each is checked.
        earlier = [(turn.text, "output" if turn.role == "assistant" else "chat") for turn in turns[:-1] if turn.text.strip()]
        await asyncio.gather(self._moderate(asked[-1], "chat", asked[-2::-1][:3]), *(self._moderate(text, kind) for text, kind in earlier))  # type: ignore[arg-type]
        options = TextOptions(
            max_tokens=int(number(body, "max_tokens", 256, 1, 8192)),
            temperature=number(body, "temperature", 0.8, 0, 2),
            seed=int(body["seed"]) if isinstance(body.get("seed"), int) else None,
        )
        completion_id = f"chatcmpl-{secrets.token_hex(8)}"
        if body.get("stream"):
            return await self._stream_chat(request, completion_id, served, turns, options)
        async with served.slot(), contextlib.aclosing(served.backend.stream(turns, options)) as chunks:
            text = "".join([chunk async for chunk in chunks])
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return web.json_response({"id": completion_id, "object": "chat.completion", "created": int(time.time()),
                                  "model": served.name, "choices": [choice]})  # fmt: skip

    async def _stream_chat(self, request: web.Request, completion_id: str, served: Served, turns: list[Turn],
                           options: TextOptions) -> web.StreamResponse:  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": served.name}
        try:
            async with served.slot(response), contextlib.aclosing(served.backend.stream(turns, options)) as chunks:
                await response.write(_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}))
                async for chunk in chunks:
                    await response.write(_sse({**base, "choices": [{"index": 0, "delta": {"content": chunk}, "finish_reason": None}]}))
        except Exception as error:  # headers are sent: the error goes in the stream
            if isinstance(error, ConnectionResetError):
                raise
            log.exception("text backend failed mid-stream")
            await response.write(_sse({"error": {"message": _failure(error, "the model failed mid-answer"), "type": "server_error", "code": 500}}))
        else:
            await response.write(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        await response.write(_sse("[DONE]"))
        await response.write_eof()
        return response

    async def images(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/images/generations (b64_json), with SSE progress when `stream` is true."""
        body = await self._json(request)
        served = self._model("image", body)
        prompt = prompt_of(body)
        size = str(body.get("size") or "512x512")
        width, _, height = size.partition("x")
        if not (width.isdigit() and height.isdigit() and all(64 <= int(side) <= 1024 and int(side) % 8 == 0 for side in (width, height))):
            raise ApiError(400, "'size' must look like 512x512 (sides 64 to 1024, multiples of 8)")
        request_ = ImageRequest(
            prompt=prompt, seed=int(number(body, "seed", secrets.randbelow(MAX_SEED), 0, MAX_SEED)), width=int(width),
            height=int(height), n=int(number(body, "n", 1, 1, 4)), negative=str(body.get("negative_prompt") or ""),
            variation=int(number(body, "variation", 0, 0, MAX_SEED)), steps=optional_number(body, "steps", 1, MAX_STEPS, int),
            guidance=optional_number(body, "guidance_scale", 0, MAX_GUIDANCE, float),
        )  # fmt: skip
        await self._moderate(prompt, "image", negative=request_.negative)
        return await self._generate(request, served, body, lambda progress: served.backend.generate(request_, progress))

    async def music(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/audio/music (ours): prompt, duration, seed → b64_json WAV; SSE progress when `stream` is true."""
        body = await self._json(request)
        served = self._model("music", body)
        prompt = prompt_of(body)
        request_ = MusicRequest(
            prompt=prompt, seed=int(number(body, "seed", secrets.randbelow(MAX_SEED), 0, MAX_SEED)),
            duration_s=number(body, "duration", 10, 1, 30), tempo=optional_number(body, "tempo", MIN_TEMPO, MAX_TEMPO, int),
            guidance=optional_number(body, "guidance", 0, MAX_GUIDANCE, float),
        )  # fmt: skip
        await self._moderate(prompt, "music")
        return await self._generate(request, served, body, lambda progress: served.backend.generate(request_, progress))

    async def _generate(self, request: web.Request, served: Served, body: dict[str, Any],
                        run: Callable[[Callable[[float, str], None]], Awaitable[list[Any]]]) -> web.StreamResponse:  # fmt: skip
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        stopped = threading.Event()

        def progress(fraction: float, note: str = "") -> None:  # called from the backend's worker thread
            if stopped.is_set() or request.transport is None:  # cancelled, or the client hung up
                raise JobCancelled("the client went away")
            loop.call_soon_threadsafe(updates.put_nowait, (fraction, note))

        if not body.get("stream"):
            async with served.slot():
                try:
                    artifacts = await run(progress)
                except asyncio.CancelledError:
                    stopped.set()
                    raise
                except JobCancelled:
                    log.info("%s: the client hung up; generation stopped", served.name)
                    raise ApiError(499, "the client closed the connection") from None
            return web.json_response(self._artifacts(artifacts))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            async with served.slot(response):
                work = asyncio.ensure_future(run(progress))
                try:
                    while not work.done():
                        getter = asyncio.ensure_future(updates.get())
                        await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
                        if getter.done():
                            fraction, note = getter.result()
                            await response.write(_sse({"type": "progress", "progress": fraction, "note": note}))
                        else:
                            getter.cancel()
                    result = work.result()
                    while not updates.empty():  # the last steps' reports can still be queued when the work ends
                        fraction, note = updates.get_nowait()
                        await response.write(_sse({"type": "progress", "progress": fraction, "note": note}))
                except (ConnectionResetError, asyncio.CancelledError):
                    stopped.set()  # the client left: the backend stops at its next step, freeing the slot
                    work.cancel()
                    raise
            await response.write(_sse({"type": "result", **self._artifacts(result)}))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as error:
            log.exception("%s backend failed", served.name)
            await response.write(_sse({"type": "error", "error": {"message": _failure(error, "generation failed"), "code": 500}}))
        await response.write(_sse("[DONE]"))
        await response.write_eof()
        return response

    @staticmethod
    def _artifacts(artifacts: list[Any]) -> dict[str, Any]:
        return {"created": int(time.time()), "data": [
            {"b64_json": base64.b64encode(a.data).decode(), "filename": a.filename, "mime_type": a.mime_type,
             "metadata": dict(a.metadata)} for a in artifacts]}  # fmt: skip

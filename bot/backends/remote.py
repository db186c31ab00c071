"""HTTP to OpenAI-compatible model servers (Atelier's host, vLLM, Ollama…): auth, probe, retries, SSE, a pool of hosts."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.backends.base import BackendLoadError
from bot.config import BackendConfig, require_secret
from bot.errors import BackendFailed, ConfigError

RETRIES = 3
RETRY_STATUSES = {429, 500, 502, 503, 504}
PROBE_TIMEOUT_S = 3.0  # an unreachable host falls back at start-up within seconds, not after the client's retries
MAX_EVENT_BYTES = 256 * 1024 * 1024
GENERIC_FAILURES = {"generation failed", "the model failed mid-answer"}
# How long a host that refused or dropped work is passed over while another is healthy.
HOST_REST_S = 15.0


class HostUnavailable(BackendFailed):
    """This host cannot take the request now (unreachable, busy, failing); another host may."""


class HostTimedOut(BackendFailed):
    """The host took the request and said nothing in time (not sent again: it may be running it)."""


class AnswerBrokeOff(BackendFailed):
    """The host's answer stopped mid-stream (it died or the connection broke)."""

    host: str | None = None  # which host, once the caller knows


class HostClient:
    """One session to one server: bearer key, a quick /models probe, POSTs retried with backoff."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        parts = urlsplit(self.base_url)
        # For messages: host and port only, never user:password@, the key or the query.
        self.host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def probe(self) -> list[dict[str, Any]]:
        """GET /models quickly: the served model entries, or BackendLoadError saying why the server cannot be used."""
        try:
            async with self._session.get(f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as response:
                if response.status == 401:
                    raise BackendLoadError(f"the model server at {self.host} refused the API key (401)")
                if response.status != 200:
                    raise BackendLoadError(f"the model server at {self.host} answered {response.status} to /models")
                data = await response.json()
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as error:
            raise BackendLoadError(f"the model server at {self.host} is unreachable ({error.__class__.__name__})") from None
        models = data.get("data", []) if isinstance(data, dict) else []
        return [model for model in models if isinstance(model, dict)] if isinstance(models, list) else []

    async def post(self, path: str, body: dict[str, Any], retries: int = RETRIES) -> aiohttp.ClientResponse:
        """POST with retries and backoff on 429/5xx and connection errors; the answer's headers within the timeout."""
        for attempt in range(retries + 1):
            try:
                response = await self._session.post(f"{self.base_url}{path}", json=body,
                                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=self.timeout_s))  # fmt: skip
            except aiohttp.SocketTimeoutError:
                # The server took the request and said nothing for timeout_s: sending it again would run it twice.
                raise HostTimedOut(f"The model server at {self.host} did not answer within {self.timeout_s:g}s; please try again.") from None
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt == retries:
                    raise HostUnavailable(f"The model server at {self.host} is unreachable; try again later, or ask an admin to check it.") from None
                await asyncio.sleep(backoff(attempt, None))
                continue
            if response.status == 200:
                return response
            retry_after = response.headers.get("Retry-After")
            reason = await _error_message(response) if response.status in (400, 404, 413) else ""
            response.release()
            if response.status in RETRY_STATUSES and attempt < retries:
                await asyncio.sleep(backoff(attempt, retry_after))
                continue
            if response.status == 429:
                raise HostUnavailable("The model server is busy; please try again in a minute.")
            if response.status in RETRY_STATUSES:
                raise HostUnavailable(f"The model server answered {response.status}; please try again, or /status.")
            # Another host of a pool may have the right key or the model: these move the work on.
            if response.status in (401, 403):
                raise HostUnavailable("The model server refused our API key; ask an admin to check it.")
            if response.status == 404:
                raise HostUnavailable(f"The model server refused the request: {reason or 'not found (404)'}")
            if reason:
                raise BackendFailed(f"The model server refused the request: {reason}")
            raise BackendFailed(f"The model server answered {response.status}; please try again, or /status.")
        raise BackendFailed()  # unreachable: the loop returns or raises

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()


async def _error_message(response: aiohttp.ClientResponse) -> str:
    """The `error.message` of an OpenAI-shaped error body, one line and short ('' if there is none)."""
    try:
        message = (await response.json(content_type=None))["error"]["message"]
    except (aiohttp.ClientError, ValueError, KeyError, TypeError):
        return ""
    return " ".join(str(message).split())[:200] if message else ""


def reported_failure(event: dict[str, Any], default: str) -> str:
    """The message in an error event, when the server gave one meant for users (Atelier's host does); else `default`."""
    error = event.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or message in GENERIC_FAILURES:
        return default
    return " ".join(message.split())[:300] or default


def backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before retry `attempt`: the server's Retry-After when given, else exponential with jitter."""
    if retry_after is not None:
        try:
            return min(float(retry_after), 30.0)
        except ValueError:
            pass
    return min(0.25 * 2**attempt + random.random() * 0.1, 8.0)


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream (one may be megabytes: a picture in base64)."""
    buffer = bytearray()
    try:
        async for chunk in response.content.iter_any():
            buffer.extend(chunk)
            while (end := buffer.find(b"\n")) >= 0:
                line = buffer[:end].decode("utf-8", "replace").strip()
                del buffer[: end + 1]
                if line.startswith("data:"):
                    yield line[5:].strip()
            if len(buffer) > MAX_EVENT_BYTES:
                raise BackendFailed("The model server sent an answer too large to take; ask for a smaller one.")
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
        raise AnswerBrokeOff("The model server's answer broke off; please try again.") from None
    line = buffer.decode("utf-8", "replace").strip()
    if line.startswith("data:"):
        yield line[5:].strip()


class HostPool:
    """Several servers of the same models: each request goes to the least busy healthy one, and moves on when refused.

    One URL (a single server or a load balancer) is a pool of one. A host that is unreachable, busy
    (429) or failing (5xx) rests for HOST_REST_S while others take its work; when every host is
    resting, the one resting longest is tried anyway.
    """

    def __init__(self, clients: list[HostClient]) -> None:
        self.clients = clients
        self.host = ", ".join(client.host for client in clients)
        self._resting_until = {client.host: 0.0 for client in clients}
        self._open: dict[str, list[aiohttp.ClientResponse]] = {client.host: [] for client in clients}
        self._sending = {client.host: 0 for client in clients}  # requests chosen for a host, not yet answered

    def busy(self, host: str) -> int:
        """Requests this host has been given and not finished answering."""
        self._open[host] = [response for response in self._open[host] if not response.closed]
        return len(self._open[host]) + self._sending[host]

    def _order(self, avoid: str | None) -> list[HostClient]:
        now = time.monotonic()
        candidates = [client for client in self.clients if client.host != avoid] or self.clients
        return sorted(candidates, key=lambda c: (self._resting_until[c.host] > now, self.busy(c.host), self._resting_until[c.host], random.random()))

    async def probe(self) -> list[dict[str, Any]]:
        """Every host's /models: the first answer's model list; hosts that do not answer start out resting."""
        answers = await asyncio.gather(*(client.probe() for client in self.clients), return_exceptions=True)
        listed = None
        for client, answer in zip(self.clients, answers, strict=True):
            if isinstance(answer, BaseException):
                self._resting_until[client.host] = time.monotonic() + HOST_REST_S
            elif listed is None:
                listed = answer
        if listed is None:
            first = answers[0]
            raise first if isinstance(first, BackendLoadError) else BackendLoadError(f"no model server answered ({self.host})")
        return listed

    async def post(self, path: str, body: dict[str, Any], avoid: str | None = None) -> aiohttp.ClientResponse:
        """POST to the least busy healthy host, moving to the next when one cannot take it; `avoid` one host if others exist."""
        order = self._order(avoid)
        for index, client in enumerate(order):
            last = index == len(order) - 1
            self._sending[client.host] += 1
            try:
                response = await client.post(path, body, retries=RETRIES if last else 0)
            except HostTimedOut:
                self.rest(client.host)  # a stuck host must not look idle and draw the next request
                raise
            except HostUnavailable:
                self.rest(client.host)
                if last:
                    raise
                continue
            finally:
                self._sending[client.host] -= 1
            self._open[client.host].append(response)
            return response
        raise BackendFailed()  # unreachable: the last host returns or raises

    def host_of(self, response: aiohttp.ClientResponse) -> str | None:
        """Which host sent this answer (to retry elsewhere when it broke off)."""
        return next((host for host, responses in self._open.items() if response in responses), None)

    def rest(self, host: str | None) -> None:
        """Pass this host over for a while (its answer broke off)."""
        if host is not None:
            self._resting_until[host] = time.monotonic() + HOST_REST_S

    async def close(self) -> None:
        """Close every host's session."""
        for client in self.clients:
            await client.close()


async def connect(config: BackendConfig, kind: str) -> tuple[HostPool, dict[str, Any]]:
    """A pool over `config.base_url` (one or several), probed; with the served model's entry ({} when none match)."""
    if not config.base_urls:
        raise BackendLoadError(f"type {config.type} needs base_url, e.g. http://gpu-host:8000/v1 (or backends.remote)")
    try:
        api_key = require_secret(config.api_key_env, f"backends.{kind}.api_key_env") if config.api_key_env else None
    except ConfigError as error:
        raise BackendLoadError(str(error)) from None
    client = HostPool([HostClient(url, api_key, config.timeout_s) for url in config.base_urls])
    try:
        models = await client.probe()
        if not config.model:
            # Atelier's host tags each model with its kind; other servers list text models only.
            return client, next((m for m in models if m.get("kind") == kind), {})
        entry = next((m for m in models if m.get("id") == config.model), None)
        if models and entry is None:
            served = ", ".join(str(m.get("id")) for m in models)
            raise BackendLoadError(f"the model server at {client.host} does not serve '{config.model}' (it has {served})")
        return client, entry or {}
    except BaseException as error:
        await client.close()
        if isinstance(error, (BackendLoadError, asyncio.CancelledError)):
            raise
        raise BackendLoadError(f"the model server at {client.host} answered /models with something unreadable") from None

"""The `openai` TextBackend: any OpenAI-compatible /v1/chat/completions server, streamed over SSE."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.backends.base import BackendLoadError, TextOptions
from bot.config import BackendConfig, require_secret
from bot.errors import BackendFailed, ConfigError
from bot.messages import Turn

log = logging.getLogger(__name__)
RETRIES = 3
RETRY_STATUSES = {429, 500, 502, 503, 504}
PROBE_TIMEOUT_S = 3.0  # an unreachable host falls back at start-up within seconds, not after the client's retries
DEFAULT_CONTEXT = 8192
CHARS_PER_TOKEN = 4  # no tokenizer on this side: a conservative estimate keeps prompts within the budget


class OpenAIText:
    """Streams chat completions from a remote server (vLLM, Ollama, `transformers serve`, Atelier's host)."""

    def __init__(self, base_url: str, model: str | None, api_key: str | None, timeout_s: float, context_tokens: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{model}" if model else "openai"
        self.context_tokens = context_tokens
        self.timeout_s = timeout_s
        self.host = urlsplit(self.base_url).netloc  # for messages: never the key, never the query
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    def count_tokens(self, text: str) -> int:
        """An estimate from the length (the server's tokenizer is not here)."""
        return len(text) // CHARS_PER_TOKEN + 1

    async def probe(self) -> list[str]:
        """GET /models quickly: the served model ids, or BackendLoadError saying why the server cannot be used."""
        try:
            async with self._session.get(f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as response:
                if response.status == 401:
                    raise BackendLoadError(f"the model server at {self.host} refused the API key (401)")
                if response.status != 200:
                    raise BackendLoadError(f"the model server at {self.host} answered {response.status} to /models")
                data = await response.json()
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as error:
            raise BackendLoadError(f"the model server at {self.host} is unreachable ({error.__class__.__name__})") from None
        return [str(model.get("id")) for model in data.get("data", []) if isinstance(model, dict)]

    async def stream(self, turns: Sequence[Turn], options: TextOptions) -> AsyncIterator[str]:
        """POST the conversation with stream=true and yield each delta's text as it arrives."""
        body: dict[str, Any] = {
            "messages": [{"role": turn.role, "content": turn.text} for turn in turns],
            "max_tokens": options.max_tokens, "temperature": options.temperature, "stream": True,
        }  # fmt: skip
        if self.model:
            body["model"] = self.model
        if options.seed is not None:
            body["seed"] = options.seed
        response = await self._post(body)
        try:
            async for data in _events(response):
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise BackendFailed("The model server failed mid-answer; please try again.")
                for choice in event.get("choices", []):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
        finally:
            response.release()

    async def _post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """Send with retries and backoff on 429/5xx and connection errors; the answer's headers within the timeout."""
        for attempt in range(RETRIES + 1):
            try:
                response = await self._session.post(f"{self.base_url}/chat/completions", json=body,
                                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=self.timeout_s))  # fmt: skip
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt == RETRIES:
                    raise BackendFailed(f"The model server at {self.host} is unreachable; try again later, or ask an admin to check it.") from None
                await asyncio.sleep(_backoff(attempt, None))
                continue
            if response.status == 200:
                return response
            retry_after = response.headers.get("Retry-After")
            response.release()
            if response.status in RETRY_STATUSES and attempt < RETRIES:
                await asyncio.sleep(_backoff(attempt, retry_after))
                continue
            if response.status == 429:
                raise BackendFailed("The model server is busy; please try again in a minute.")
            if response.status in (401, 403):
                raise BackendFailed("The model server refused our API key; ask an admin to check it.")
            raise BackendFailed(f"The model server answered {response.status}; please try again, or /status.")
        raise BackendFailed()  # unreachable: the loop returns or raises

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after is not None:
        try:
            return min(float(retry_after), 30.0)
        except ValueError:
            pass
    return min(0.25 * 2**attempt + random.random() * 0.1, 8.0)


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream."""
    async for raw in response.content:
        line = raw.decode("utf-8", "replace").strip()
        if line.startswith("data:"):
            yield line[5:].strip()


async def create(config: BackendConfig) -> OpenAIText:
    """Factory for text `type: openai` (base_url like http://gpu-host:8000/v1; api_key_env names the key)."""
    if not config.base_url:
        raise BackendLoadError("type openai needs base_url, e.g. http://gpu-host:8000/v1")
    try:
        api_key = require_secret(config.api_key_env, "backends.text.api_key_env") if config.api_key_env else None
    except ConfigError as error:
        raise BackendLoadError(str(error)) from None
    context = int(config.options.get("context_tokens", DEFAULT_CONTEXT))
    backend = OpenAIText(config.base_url, config.model, api_key, config.timeout_s, context)
    try:
        models = await backend.probe()
        if config.model and models and config.model not in models:
            raise BackendLoadError(f"the model server at {backend.host} does not serve '{config.model}' (it has {', '.join(models)})")
    except BackendLoadError:
        await backend.close()
        raise
    return backend

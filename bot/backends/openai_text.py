"""The `openai` TextBackend: any OpenAI-compatible /v1/chat/completions server, streamed over SSE."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bot.backends.base import TextOptions
from bot.backends.remote import HostPool, connect, events, reported_failure
from bot.config import BackendConfig
from bot.errors import BackendFailed
from bot.messages import Turn

log = logging.getLogger(__name__)
DEFAULT_CONTEXT = 8192
CHARS_PER_TOKEN = 4  # no tokenizer on this side: a conservative estimate keeps prompts within the budget


class OpenAIText:
    """Streams chat completions from a remote server (vLLM, Ollama, `transformers serve`, Atelier's host)."""

    def __init__(self, client: HostPool, model: str | None, context_tokens: int) -> None:
        self.client, self.model = client, model
        self.name = f"openai:{model}" if model else "openai"
        self.context_tokens = context_tokens

    def count_tokens(self, text: str) -> int:
        """An estimate from the length (the server's tokenizer is not here)."""
        return len(text) // CHARS_PER_TOKEN + 1

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
        response = await self.client.post("/chat/completions", body)
        finished = False
        try:
            async for data in events(response):
                if data == "[DONE]":
                    finished = True
                    return
                event = json.loads(data)
                if "error" in event:
                    raise BackendFailed(reported_failure(event, "The model server failed mid-answer; please try again."))
                for choice in event.get("choices", []):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
                    finished = finished or bool(choice.get("finish_reason"))
            if not finished:  # closed without saying it was done: the answer may be cut short
                raise BackendFailed("The model server stopped mid-answer; please try again.")
        finally:
            # A reader that left early drops the connection, so the server stops generating for it.
            (response.release if finished else response.close)()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.client.close()


async def create(config: BackendConfig) -> OpenAIText:
    """Factory for text `type: openai` (base_url like http://gpu-host:8000/v1; api_key_env names the key)."""
    client, _ = await connect(config, "text")
    return OpenAIText(client, config.model, int(config.options.get("context_tokens", DEFAULT_CONTEXT)))

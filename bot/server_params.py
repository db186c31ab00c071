"""What the GPU host reads from a request body, and the OpenAI-shaped error it answers when that is wrong."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.messages import Turn

ROLES = {"system", "user", "assistant"}


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}

    def response(self) -> web.Response:
        """The JSON error response."""
        body = {"error": {"message": self.message, "type": self.kind, "code": self.status}}
        return web.json_response(body, status=self.status, headers=self.headers)


def number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    """A number the client may leave out (then `default`), within [low, high]; a 400 otherwise."""
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ApiError(400, f"'{key}' must be a number from {low:g} to {high:g}")
    return float(value)


def optional_number(body: dict[str, Any], key: str, low: float, high: float, kind: type[int] | type[float]) -> Any:
    """A number the client may leave out (None: the model's own default)."""
    if body.get(key) is None:
        return None
    return kind(number(body, key, 0, low, high))


def prompt_of(body: dict[str, Any]) -> str:
    """The non-empty `prompt` text; a 400 otherwise."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "'prompt' must be non-empty text")
    return prompt


def turns_of(body: dict[str, Any]) -> list[Turn]:
    """The `messages` list as turns; a 400 for anything else."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content}")
    turns = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise ApiError(400, "each message needs a role (system, user or assistant) and text content")
        turns.append(Turn(message["role"], message["content"]))
    return turns

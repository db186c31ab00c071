"""The `openai` image and `remote` music backends: Atelier's GPU host (or any server with the same endpoints).

Both ask for `stream: true`, so the host's progress events reach the job as they happen. A cancelled
job closes the connection, which the host takes as the signal to stop at its next step.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from bot.backends.media import ImageRequest, MusicRequest, Progress
from bot.backends.remote import AnswerBrokeOff, HostPool, connect, events, reported_failure
from bot.config import BackendConfig
from bot.errors import BackendFailed
from bot.messages import Artifact


class RemoteGenerator:
    """POSTs one request and follows its SSE stream: progress events, then the files."""

    path = ""

    def __init__(self, client: HostPool, model: str | None, served: dict[str, Any]) -> None:
        self.client, self.model = client, model
        self.name = str(served.get("id") or model or "remote")
        self.supports_variations = bool(served.get("supports_variations", False))

    async def _generate(self, body: dict[str, Any], progress: Progress) -> list[Artifact]:
        if self.model:
            body["model"] = self.model
        try:
            return await self._follow(body, progress, avoid=None)
        except AnswerBrokeOff as broke:
            # The host died mid-run: once, elsewhere (the same host when it is the only one).
            self.client.rest(broke.host)
            return await self._follow(body, progress, avoid=broke.host)

    async def _follow(self, body: dict[str, Any], progress: Progress, avoid: str | None) -> list[Artifact]:
        response = await self.client.post(self.path, {**body, "stream": True}, avoid=avoid)
        host = self.client.host_of(response)
        finished = False
        try:
            async for data in events(response):
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if event.get("type") == "progress":
                    progress(float(event.get("progress", 0.0)), str(event.get("note", "")))  # raises once cancelled
                elif event.get("type") == "result":
                    finished = True
                    return [_artifact(item) for item in event.get("data", [])]
                elif event.get("type") == "error" or "error" in event:
                    finished = True
                    raise BackendFailed(reported_failure(event, "The model server failed while generating; please try again."))
            finished = True
            raise BackendFailed("The model server ended the stream without a result; please try again.")
        except AnswerBrokeOff as broke:
            broke.host = host
            raise
        except (json.JSONDecodeError, KeyError, ValueError, TypeError, binascii.Error):
            raise BackendFailed("The model server sent something unreadable; ask an admin to check it.") from None
        finally:
            (response.release if finished else response.close)()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.client.close()


def _artifact(item: dict[str, Any]) -> Artifact:
    return Artifact(base64.b64decode(item["b64_json"], validate=True), str(item["mime_type"]), str(item["filename"]),
                    {str(k): str(v) for k, v in (item.get("metadata") or {}).items()})  # fmt: skip


class OpenAIImage(RemoteGenerator):
    """Pictures from POST /v1/images/generations (b64_json)."""

    path = "/images/generations"

    async def generate(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
        """`request.n` PNGs made on the server, with its progress."""
        body: dict[str, Any] = {"prompt": request.prompt, "seed": request.seed, "size": f"{request.width}x{request.height}",
                                "n": request.n, "response_format": "b64_json", "variation": request.variation}  # fmt: skip
        if request.negative:
            body["negative_prompt"] = request.negative
        if request.steps is not None:
            body["steps"] = request.steps
        if request.guidance is not None:
            body["guidance_scale"] = request.guidance
        return await self._generate(body, progress)


class RemoteMusic(RemoteGenerator):
    """Music from POST /v1/audio/music (Atelier's own endpoint)."""

    path = "/audio/music"

    async def generate(self, request: MusicRequest, progress: Progress) -> list[Artifact]:
        """The WAV (and any companion files) made on the server, with its progress."""
        body: dict[str, Any] = {"prompt": request.prompt, "seed": request.seed, "duration": request.duration_s}
        if request.tempo is not None:
            body["tempo"] = request.tempo
        if request.guidance is not None:
            body["guidance"] = request.guidance
        return await self._generate(body, progress)


async def create_image(config: BackendConfig) -> OpenAIImage:
    """Factory for image `type: openai` (base_url of the host, api_key_env, optional model)."""
    client, served = await connect(config, "image")
    return OpenAIImage(client, config.model, served)


async def create_music(config: BackendConfig) -> RemoteMusic:
    """Factory for music `type: remote` (base_url of Atelier's host, api_key_env, optional model)."""
    client, served = await connect(config, "music")
    return RemoteMusic(client, config.model, served)

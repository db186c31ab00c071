"""Several GPU hosts behind one backend: the least busy healthy one works, a busy or dead one hands its work on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot import server
from bot.backends import registry
from bot.backends.algorithmic import AlgorithmicBackend
from bot.backends.media import ImageRequest
from bot.backends.remote_media import OpenAIImage
from bot.config import BackendConfig
from tests.test_remote_backends import RecordingImages
from tests.test_server import KEY, listen

STATUSES = {"busy": 429, "has another key": 401}
MODELS = {"object": "list", "data": [{"id": "procedural", "kind": "image", "supports_variations": True}]}


class Counted:
    """A stand-in host that lists the image model and answers every picture request one way, counting them."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.posts = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/images/generations", self.post)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(MODELS)

    async def post(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        if self.answer in STATUSES:
            return web.json_response({"error": {"message": self.answer}}, status=STATUSES[self.answer])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"type": "progress", "progress": 0.1, "note": "step 1"}\n\n')
        request.transport.close()  # type: ignore[union-attr]  # the host dies mid-run
        return response


@pytest.fixture
async def real_hosts() -> AsyncIterator[list[tuple[str, RecordingImages]]]:
    started = []
    for _ in range(2):
        images = RecordingImages()
        runner, url = await listen(server.Host(None, images, AlgorithmicBackend(), KEY).app())
        started.append((runner, f"{url}/v1", images))
    yield [(url, images) for _, url, images in started]
    for runner, _, _ in started:
        await runner.cleanup()


async def pool_of(urls: list[str], monkeypatch: pytest.MonkeyPatch) -> OpenAIImage:
    monkeypatch.setenv("GPU_HOST_KEY", KEY)
    backend, status = await registry.load("image", BackendConfig(type="openai", base_url=urls, api_key_env="GPU_HOST_KEY"))
    assert isinstance(backend, OpenAIImage), status.reason
    return backend


def ask(seed: int) -> ImageRequest:
    return ImageRequest("a lighthouse", seed, 64, 64)


async def test_pictures_spread_over_the_hosts(real_hosts: list[tuple[str, RecordingImages]], monkeypatch: pytest.MonkeyPatch) -> None:
    backend = await pool_of([url for url, _ in real_hosts], monkeypatch)
    try:
        results = await asyncio.gather(*(backend.generate(ask(seed), lambda fraction, note: None) for seed in range(8)))
    finally:
        await backend.close()
    assert all(len(result) == 1 for result in results)
    counts = [len(images.requests) for _, images in real_hosts]
    assert sum(counts) == 8 and min(counts) >= 2, counts  # neither host sat idle while the other queued


@pytest.mark.parametrize("failing", ["busy", "has another key", "dies mid-run"])
async def test_a_busy_misconfigured_or_dying_host_hands_the_picture_to_another(
    failing: str, real_hosts: list[tuple[str, RecordingImages]], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = Counted(failing)
    runner, bad_url = await listen(bad.app())
    good_url, good = real_hosts[0]
    backend = await pool_of([f"{bad_url}/v1", good_url], monkeypatch)
    try:  # at once, so the least busy host is the bad one for some of them
        results = await asyncio.gather(*(backend.generate(ask(seed), lambda fraction, note: None) for seed in range(4)))
        tried = bad.posts
        later = await backend.generate(ask(9), lambda fraction, note: None)
    finally:
        await backend.close()
        await runner.cleanup()
    assert [picture.mime_type for [picture] in [*results, later]] == ["image/png"] * 5
    assert len(good.requests) == 5
    assert tried >= 1 and bad.posts == tried  # tried, then rested: the next picture went straight to the good host


async def test_a_pool_whose_every_host_is_down_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_HOST_KEY", KEY)
    urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    backend, status = await registry.load("image", BackendConfig(type="openai", base_url=urls, api_key_env="GPU_HOST_KEY"))
    assert backend is None and "unreachable" in status.reason and "\n" not in status.reason

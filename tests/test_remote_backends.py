"""The `openai` image and `remote` music clients against the GPU host on 127.0.0.1: same files, same progress, cancel."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot import server
from bot.backends import registry
from bot.backends.algorithmic import AlgorithmicBackend
from bot.backends.media import ImageRequest, JobCancelled, MusicRequest, Progress
from bot.backends.procedural import ProceduralBackend
from bot.backends.remote_media import OpenAIImage, RemoteMusic
from bot.config import BackendConfig, parse_config
from bot.core import Bot
from bot.errors import BackendFailed
from bot.messages import Artifact
from tests.conftest import make_config
from tests.fakes import GatedImageBackend
from tests.test_jobs_console import run_console
from tests.test_server import KEY, listen


class RecordingImages(ProceduralBackend):
    """The procedural backend, remembering what it was asked (to see what crosses the wire)."""

    def __init__(self) -> None:
        self.requests: list[ImageRequest] = []

    async def generate(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
        self.requests.append(request)
        return await super().generate(request, progress)


@pytest.fixture
async def images() -> RecordingImages:
    return RecordingImages()


@pytest.fixture
async def gpu_host(images: RecordingImages) -> AsyncIterator[tuple[str, server.Host]]:
    host = server.Host(None, images, AlgorithmicBackend(), KEY)
    runner, url = await listen(host.app())
    yield f"{url}/v1", host
    await runner.cleanup()


@pytest.fixture
def remote_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GPU_HOST_KEY", KEY)
    return "GPU_HOST_KEY"


async def connect_image(url: str, env: str) -> OpenAIImage:
    backend, status = await registry.load("image", BackendConfig(type="openai", base_url=url, api_key_env=env))
    assert isinstance(backend, OpenAIImage), status.reason
    return backend


def recorder() -> tuple[list[tuple[float, str]], Progress]:
    seen: list[tuple[float, str]] = []
    return seen, lambda fraction, note: seen.append((fraction, note))


async def test_pictures_and_progress_match_the_in_process_backend(gpu_host: tuple[str, server.Host], remote_env: str) -> None:
    url, _ = gpu_host
    remote = await connect_image(url, remote_env)
    try:
        assert remote.name == "procedural" and remote.supports_variations
        request = ImageRequest("a red fox", 5, 72, 64, n=2, negative="blurry", variation=3)
        remote_seen, remote_progress = recorder()
        local_seen, local_progress = recorder()
        over_http = await remote.generate(request, remote_progress)
        in_process = await ProceduralBackend().generate(request, local_progress)
        assert [(a.data, a.filename, a.mime_type, a.metadata) for a in over_http] == [(a.data, a.filename, a.mime_type, a.metadata) for a in in_process]
        assert remote_seen == local_seen and len(remote_seen) == 16
    finally:
        await remote.close()


async def test_steps_guidance_and_negative_cross_the_wire(gpu_host: tuple[str, server.Host], images: RecordingImages, remote_env: str) -> None:
    remote = await connect_image(gpu_host[0], remote_env)
    try:
        await remote.generate(ImageRequest("dunes", 1, 64, 64, negative="text", steps=3, guidance=1.5), lambda f, n: None)
        await remote.generate(ImageRequest("dunes", 1, 64, 64), lambda f, n: None)
        assert images.requests == [ImageRequest("dunes", 1, 64, 64, negative="text", steps=3, guidance=1.5), ImageRequest("dunes", 1, 64, 64)]
    finally:
        await remote.close()


async def test_music_over_http_is_the_same_wav_and_midi(gpu_host: tuple[str, server.Host], remote_env: str) -> None:
    backend, status = await registry.load("music", BackendConfig(type="remote", base_url=gpu_host[0], api_key_env=remote_env))
    assert isinstance(backend, RemoteMusic), status.reason
    try:
        request = MusicRequest("calm piano", 3, duration_s=2, tempo=90)
        remote_seen, remote_progress = recorder()
        local_seen, local_progress = recorder()
        over_http = await backend.generate(request, remote_progress)
        in_process = await AlgorithmicBackend().generate(request, local_progress)
        assert [(a.data, a.filename) for a in over_http] == [(a.data, a.filename) for a in in_process]
        assert remote_seen == local_seen and remote_seen
    finally:
        await backend.close()


async def test_a_cancelled_job_stops_the_work_on_the_host(remote_env: str) -> None:
    gated = GatedImageBackend()  # never finishes on its own: only the host stopping it ends the work
    host = server.Host(None, gated, None, KEY)
    runner, url = await listen(host.app())
    remote = await connect_image(f"{url}/v1", remote_env)
    seen: list[float] = []

    def cancel_after_two(fraction: float, note: str) -> None:
        seen.append(fraction)
        if len(seen) == 2:
            raise JobCancelled("cancelled")

    try:
        with pytest.raises(JobCancelled):
            await remote.generate(ImageRequest("big", 1, 64, 64), cancel_after_two)
        served = host.served["image"]
        for _ in range(100):
            if served.waiting == 0:
                break
            await asyncio.sleep(0.05)
        assert served.waiting == 0 and not served.semaphore.locked(), "the host kept working for a client that left"
    finally:
        await remote.close()
        await runner.cleanup()
        await gated.close()


async def test_a_queued_request_is_kept_alive_until_its_turn(monkeypatch: pytest.MonkeyPatch, remote_env: str) -> None:
    """A client that times out after 0.5 s of silence still gets its picture after waiting 1.5 s in the host's queue."""
    monkeypatch.setattr(server, "KEEPALIVE_S", 0.1)
    gated = GatedImageBackend()
    runner, url = await listen(server.Host(None, gated, None, KEY).app())
    backend, _ = await registry.load("image", BackendConfig(type="openai", base_url=f"{url}/v1", api_key_env=remote_env, timeout_s=0.5))
    assert isinstance(backend, OpenAIImage)
    try:
        first = asyncio.create_task(backend.generate(ImageRequest("first", 1, 64, 64), lambda f, n: None))
        await asyncio.to_thread(gated.started.wait, 5)
        second = asyncio.create_task(backend.generate(ImageRequest("second", 2, 64, 64), lambda f, n: None))
        await asyncio.sleep(1.5)
        gated.release.set()
        assert [a.filename for a in await first] == ["gated-1.png"]
        assert [a.filename for a in await second] == ["gated-2.png"]
    finally:
        await backend.close()
        await runner.cleanup()


async def test_a_big_file_crosses_the_wire_intact(remote_env: str) -> None:
    """An SDXL PNG or a 30 s WAV is megabytes, sent as one SSE line."""
    noise = os.urandom(3 * 1024 * 1024)

    class Big(ProceduralBackend):
        async def generate(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
            return [Artifact(noise, "image/png", "atelier-1.png", {"seed": "1"})]

    runner, url = await listen(server.Host(None, Big(), None, KEY).app())
    remote = await connect_image(f"{url}/v1", remote_env)
    try:
        [artifact] = await remote.generate(ImageRequest("big", 1, 1024, 1024), lambda f, n: None)
        assert artifact.data == noise
    finally:
        await remote.close()
        await runner.cleanup()


async def test_a_wrong_key_or_a_missing_host_falls_back(gpu_host: tuple[str, server.Host], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_KEY", "nope")
    _, status = await registry.load("image", BackendConfig(type="openai", base_url=gpu_host[0], api_key_env="WRONG_KEY",
                                                           fallback=BackendConfig(type="procedural")))  # fmt: skip
    assert status.active == "procedural" and "refused the API key" in status.reason
    _, status = await registry.load("music", BackendConfig(type="remote", base_url="http://127.0.0.1:9/v1",
                                                           fallback=BackendConfig(type="algorithmic")))  # fmt: skip
    assert status.active == "algorithmic" and "unreachable" in status.reason


async def test_a_host_failure_is_one_line_for_the_user(remote_env: str) -> None:
    class Broken(ProceduralBackend):
        async def generate(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
            progress(0.1, "step 1")
            if request.prompt == "withheld":
                raise BackendFailed("The model's safety checker withheld that picture; try a different prompt.")
            raise RuntimeError("CUDA out of memory at /secret/path")

    runner, url = await listen(server.Host(None, Broken(), None, KEY).app())
    remote = await connect_image(f"{url}/v1", remote_env)
    try:
        with pytest.raises(BackendFailed) as failed:
            await remote.generate(ImageRequest("x", 1, 64, 64), lambda f, n: None)
        assert failed.value.user_message == "The model server failed while generating; please try again."
        with pytest.raises(BackendFailed) as failed:
            await remote.generate(ImageRequest("withheld", 1, 64, 64), lambda f, n: None)
        assert failed.value.user_message == "The model's safety checker withheld that picture; try a different prompt."
    finally:
        await remote.close()
        await runner.cleanup()


async def test_a_request_the_host_refuses_says_why(gpu_host: tuple[str, server.Host], remote_env: str) -> None:
    remote = await connect_image(gpu_host[0], remote_env)
    try:
        with pytest.raises(BackendFailed) as refused:
            await remote.generate(ImageRequest("tiny", 1, 32, 32), lambda f, n: None)
        assert refused.value.user_message == "The model server refused the request: 'size' must look like 512x512 (sides 64 to 1024, multiples of 8)"
    finally:
        await remote.close()


def test_backends_share_the_remote_host_unless_they_name_their_own() -> None:
    config = parse_config({"backends": {
        "remote": {"type": "openai", "base_url": "http://gpu:8000/v1", "api_key_env": "K", "timeout_s": 120},
        "text": {"type": "transformers", "model": "Qwen/Qwen2.5-0.5B-Instruct", "fallback": {"type": "openai", "model": "qwen"}},
        "image": {"type": "openai", "base_url": "http://other:9000/v1"},
        "music": {"type": "algorithmic"},
    }})  # fmt: skip
    remote_text = config.backends.text.fallback
    assert remote_text is not None and config.backends.text.base_url is None
    assert (remote_text.base_url, remote_text.api_key_env, remote_text.timeout_s) == ("http://gpu:8000/v1", "K", 120)
    assert (config.backends.image.base_url, config.backends.image.api_key_env) == ("http://other:9000/v1", "K")
    assert config.backends.music.base_url is None


async def test_the_bot_makes_pictures_and_music_through_the_host(gpu_host: tuple[str, server.Host], remote_env: str, tmp_path: Path) -> None:
    config = make_config(tmp_path, backends={"remote": {"type": "openai", "base_url": gpu_host[0], "api_key_env": remote_env},
                                             "image": {"type": "openai"}, "music": {"type": "remote"}})  # fmt: skip
    bot = await Bot.start(config)
    try:
        assert "image: openai (procedural)" in bot.status_lines() and "music: remote (algorithmic)" in bot.status_lines()
        lines = await run_console(bot, tmp_path, "/imagine a red fox --seed 5 --size 64x64\n/compose calm piano --seed 2 --duration 2\n")
        out = tmp_path / "out"
        job_id = re.search(r"job ([0-9a-f]{8})", lines[0]).group(1)  # type: ignore[union-attr]
        names = sorted(p.name.split("-seed")[1] for p in out.iterdir())
        assert names == ["2.mid", "2.wav", "5.png"] and (out / f"a-red-fox-{job_id}-seed5.png").exists(), lines
        varied = await run_console(bot, tmp_path, f"/vary {job_id} 1\n")
        assert any("-seed5-v" in line for line in varied), varied
    finally:
        await bot.close()


async def test_a_listing_without_kinds_still_connects(remote_env: str) -> None:
    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "sd-turbo"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner, url = await listen(app)
    try:
        backend, status = await registry.load("image", BackendConfig(type="openai", base_url=f"{url}/v1", model="sd-turbo"))
        assert isinstance(backend, OpenAIImage) and backend.name == "sd-turbo" and not backend.supports_variations
        await backend.close()
    finally:
        await runner.cleanup()

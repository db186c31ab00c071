"""The GPU host under hostile or careless clients: raw sockets, browsers, bad numbers, clients that hang up."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot import connections, server
from bot.backends.algorithmic import AlgorithmicBackend
from tests.fakes import GatedImageBackend, QueuedTextBackend
from tests.test_server import KEY, call

HEAD = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[server.Host, int]]:
    host = server.Host(QueuedTextBackend(), GatedImageBackend(), AlgorithmicBackend(), KEY)
    host.guard.header_timeout = 0.5
    listening = await host.listen("127.0.0.1", 0)
    yield host, listening.port
    await listening.close()
    await host.served["image"].backend.close()


async def seconds_until_closed(port: int, first: bytes, every: float, limit: float) -> float:
    """Send `first`, then a header line every `every` s, until the host closes the connection (inf past `limit`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(first)
    try:
        while time.monotonic() - started < limit:
            try:
                if await asyncio.wait_for(reader.read(4096), every) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
            except ConnectionError:
                return time.monotonic() - started
        return float("inf")
    finally:
        writer.close()


async def test_a_client_that_sends_nothing_is_closed(guarded: tuple[server.Host, int]) -> None:
    host, port = guarded
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert time.monotonic() - started < 2
    writer.close()
    assert host.guard.closed_idle >= 1


async def test_a_header_line_every_few_moments_does_not_keep_the_connection(guarded: tuple[server.Host, int]) -> None:
    _, port = guarded
    took = await seconds_until_closed(port, HEAD.encode(), every=0.1, limit=5)
    assert took < 2, "a client trickling header lines held its connection open"


async def test_a_body_trickled_a_byte_at_a_time_gets_408(guarded: tuple[server.Host, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "BODY_TIMEOUT_S", 0.5)
    _, port = guarded
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((HEAD + "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{").encode())
    for _ in range(20):
        writer.write(b" ")
        await asyncio.sleep(0.1)
        if reader.at_eof() or len(reader._buffer):  # type: ignore[attr-defined]
            break
    answer = await asyncio.wait_for(reader.read(4096), 3)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b"too slowly" in answer


async def test_idle_connections_near_the_file_limit_cannot_lock_out_a_keyed_client() -> None:
    """A real host process with a 256-file limit; 600 idle sockets; a request with the key still answers in < 1 s."""
    script = textwrap.dedent(f"""
        import asyncio, resource, sys
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        from bot import server
        from bot.backends.algorithmic import AlgorithmicBackend

        async def main():
            listening = await server.Host(None, None, AlgorithmicBackend(), {KEY!r}).listen("127.0.0.1", 0)
            print(listening.port, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    idle: list[socket.socket] = []
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        for _ in range(600):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            idle.append(sock)
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout, headers={"Authorization": f"Bearer {KEY}"}) as session:
            async with session.get(f"http://127.0.0.1:{port}/v1/models") as response:
                assert response.status == 200
        assert time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()
        process.kill()
        process.wait()


async def test_a_web_page_cannot_drive_a_keyless_host() -> None:
    backend = QueuedTextBackend()
    listening = await server.Host(backend, None, None, None).listen("127.0.0.1", 0)
    url = f"http://127.0.0.1:{listening.port}/v1/chat/completions"
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=body, headers={"Content-Type": "text/plain", "Origin": "http://evil.example"}) as response:
                assert response.status == 403
            async with session.post(url, data=body, headers={"Content-Type": "text/plain"}) as response:
                assert response.status == 415
                assert "application/json" in (await response.json())["error"]["message"]
        assert backend.prompts == [], "a browser request reached the model"
    finally:
        await listening.close()


@pytest.mark.parametrize("tempo", [-120, 0, 200_000, "fast"])
async def test_music_tempo_out_of_range_is_a_400(guarded: tuple[server.Host, int], tempo: object) -> None:
    _, port = guarded
    status, data, _ = await call(f"http://127.0.0.1:{port}", "/v1/audio/music", {"prompt": "calm piano", "tempo": tempo})
    assert status == 400 and "'tempo' must be a number from 40 to 240" in data["error"]["message"]


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"max_tokens": ' + b"9" * 4400 + b"}"])
async def test_pathological_json_is_a_400_not_a_crash(guarded: tuple[server.Host, int], raw: bytes) -> None:
    _, port = guarded
    status, data, _ = await call(f"http://127.0.0.1:{port}", "/v1/chat/completions", raw=raw)
    assert status == 400 and "not valid JSON" in data["error"]["message"]


async def test_a_picture_stops_generating_when_its_client_hangs_up(guarded: tuple[server.Host, int]) -> None:
    host, port = guarded
    gated: GatedImageBackend = host.served["image"].backend
    timeout = aiohttp.ClientTimeout(total=0.5)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Authorization": f"Bearer {KEY}"}) as session:
        with pytest.raises(TimeoutError):
            async with session.post(f"http://127.0.0.1:{port}/v1/images/generations", json={"prompt": "a fox", "size": "64x64"}):
                pass
    served = host.served["image"]
    for _ in range(100):
        if served.waiting == 0:
            break
        await asyncio.sleep(0.05)
    assert gated.started.is_set()
    assert served.waiting == 0 and not served.semaphore.locked(), "the host kept generating for a client that left"

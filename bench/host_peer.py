"""`bench/host.py peer`: the GPU host and `transformers serve` on the same tiny model, quiet or loaded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.peers import busy_loops, cpu_seconds, stop
from tests import tiny_models
from tests.slack_harness import free_port

ROOT = Path(__file__).resolve().parent.parent
STREAMS = (1, 8, 32)


async def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 180) -> None:
    """Until GET url answers 200 (or the process dies, with the end of its log)."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log.read_bytes()[-1500:].decode(errors="replace")
                raise RuntimeError(f"the server exited ({process.returncode}): {tail}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def start_atelier(model: Path, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m bot serve` with the transformers backend on the tiny model (its own moderation off, as the peer has none)."""
    port = free_port()
    config = folder / "host.yaml"
    config.write_text(json.dumps({"backends": {"text": {"type": "transformers", "model": str(model), "device": "cpu"}},
                                  "serve": {"moderation": False}}))  # fmt: skip
    command = [sys.executable, "-m", "bot", "serve", "--config", str(config), "--port", str(port)]
    log = open(folder / "atelier.log", "wb")  # noqa: SIM115 - the child writes it
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log), f"http://127.0.0.1:{port}"


def start_transformers_serve(model: Path, folder: Path, serving: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Hugging Face's `transformers serve`, the model forced, on CPU."""
    port = free_port()
    code = ("import sys; from transformers.cli.transformers import main; "
            f"sys.argv = ['transformers', 'serve', '--port', '{port}', '--device', 'cpu', '{model}']; sys.exit(main())")  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(serving)}
    log = open(folder / "transformers_serve.log", "wb")  # noqa: SIM115 - the child writes it
    return subprocess.Popen([sys.executable, "-c", code], env=environment, stdout=log, stderr=log), f"http://127.0.0.1:{port}"


async def drive(url: str, model: str, streams: int, seconds: float, tokens: int) -> tuple[int, int, int]:
    """`streams` clients asking one streamed answer after another for `seconds`: (answers, chunks, failures)."""
    body = {"model": model, "messages": [{"role": "user", "content": "tell me about the sea"}], "max_tokens": tokens,
            "stream": True, "temperature": 0.8}  # fmt: skip
    deadline = time.monotonic() + seconds
    counts = [0, 0, 0]

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            try:
                async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                    if response.status != 200:
                        counts[2] += 1
                        await asyncio.sleep(0.1)
                        continue
                    async for line in response.content:
                        if line.startswith(b"data:") and b'"content"' in line:
                            counts[1] += 1
                    counts[0] += 1
            except aiohttp.ClientError:
                counts[2] += 1

    timeout = aiohttp.ClientTimeout(total=seconds + 120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(streams)))
    return counts[0], counts[1], counts[2]


async def measure(process: subprocess.Popen[bytes], url: str, model: str, seconds: float, tokens: int) -> dict[str, Any]:
    """Every concurrency level against one server."""
    await drive(url, model, 1, 2, tokens)  # warm-up
    result: dict[str, Any] = {}
    for streams in STREAMS:
        before, started = cpu_seconds(process.pid), time.monotonic()
        answers, chunks, failures = await drive(url, model, streams, seconds, tokens)
        elapsed, cpu = time.monotonic() - started, cpu_seconds(process.pid) - before
        result[f"streams_{streams}"] = {"requests_per_s": round(answers / elapsed, 2), "tokens_per_s": round(chunks / elapsed, 1),
                                        "cpu_s_per_request": round(cpu / max(answers, 1), 3), "failures": failures}  # fmt: skip
    return result


async def compare(serving: Path, load: bool, seconds: float, tokens: int) -> dict[str, Any]:
    """Both servers, one after the other, on the same tiny model."""
    results: dict[str, Any] = {"load": "busy loop on every core" if load else "quiet", "seconds": seconds, "max_tokens": tokens,
                               "model": "tiny random Qwen2 (2 layers, 64 wide), CPU float32"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = tiny_models.language_model(folder / "lm")
        for name, start in (("atelier", lambda: start_atelier(model, folder)),
                            ("transformers_serve", lambda: start_transformers_serve(model, folder, serving))):  # fmt: skip
            process, url = start()
            busy: list[subprocess.Popen[bytes]] = []
            try:
                await wait_healthy(f"{url}/health", process, folder / f"{name}.log")
                if load:
                    busy = busy_loops()
                results[name] = await measure(process, url, str(model), seconds, tokens)
            finally:
                stop(process, busy, grace=15)
    ours, theirs = results["atelier"], results["transformers_serve"]
    results["ratios_requests_per_s"] = {level: round(ours[level]["requests_per_s"] / theirs[level]["requests_per_s"], 2)
                                        for level in ours if theirs[level]["requests_per_s"]}  # fmt: skip
    return results

"""Real-backend benchmark on this CPU with the tiny test models: host overhead and batched throughput.

Run: `python bench/backends.py [--runs N] [--tokens T]`; prints JSON. A tiny random Qwen2 (the one the
tests build offline) is loaded through the `transformers` backend. It is measured in-process and
through `python -m bot serve`'s app on 127.0.0.1 with the `openai` text client: time to first token
and time per token after it (p50/p99), then aggregate tokens/s at 1, 8 and 32 concurrent streams with
continuous batching, and with batching off for comparison. End tokens are ignored so that every
stream runs exactly T tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import pct
from bot import server
from bot.backends import transformers_text
from bot.backends.base import TextOptions
from bot.backends.openai_text import OpenAIText
from bot.backends.remote import HostClient
from bot.backends.transformers_text import TransformersText
from bot.config import BackendConfig
from bot.messages import Turn
from tests import tiny_models
from tests.test_server import listen

TURNS = [Turn("system", "You are Atelier, a friendly assistant."), Turn("user", "Tell me something about the sea.")]


async def timed(pieces: AsyncIterator[str], tokens: int) -> tuple[float, float]:
    """(time to first piece, time per token after it) for one stream."""
    start = time.perf_counter()
    first = last = 0.0
    async for _ in pieces:
        last = time.perf_counter() - start
        first = first or last
    return first, (last - first) / max(1, tokens - 1)


async def latency(stream: Any, runs: int, tokens: int) -> dict[str, float]:
    options = TextOptions(max_tokens=tokens, temperature=0.8)
    results = [await timed(stream(TURNS, options), tokens) for _ in range(runs)]
    firsts, per_token = [r[0] for r in results], [r[1] for r in results]
    return {"first_token_p50_ms": pct(firsts, 50), "first_token_p99_ms": pct(firsts, 99),
            "per_token_p50_ms": pct(per_token, 50), "per_token_p99_ms": pct(per_token, 99)}  # fmt: skip


async def throughput(backend: TransformersText, streams: int, tokens: int, repeats: int = 3) -> float:
    """Aggregate tokens/s of `streams` concurrent streams (the median of `repeats` rounds)."""
    options = TextOptions(max_tokens=tokens, temperature=0.8)

    async def one(index: int) -> None:
        async for _ in backend.stream([Turn("user", f"Question {index}: tell me about the sea.")], options):
            pass

    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(streams)))
        rates.append(streams * tokens / (time.perf_counter() - start))
    return round(sorted(rates)[len(rates) // 2], 1)


async def load(folder: Path, batching: bool) -> TransformersText:
    backend = await transformers_text.create(BackendConfig(type="transformers", model=str(folder), options={"batching": batching}))
    backend.stop_ids = set()  # every stream runs its full length, so the figures compare like with like
    return backend


async def main(runs: int, tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = tiny_models.language_model(Path(tmp) / "lm")
        backend = await load(folder, batching=True)
        runner, url = await listen(server.Host(backend, None, None, None).app())
        client = OpenAIText(HostClient(f"{url}/v1", None, timeout_s=60), None, backend.context_tokens)
        try:
            await throughput(backend, 4, tokens)  # warm-up: the batching thread's first steps are slow
            await timed(client.stream(TURNS, TextOptions(max_tokens=2)), 2)  # warm-up: the client's keep-alive connection
            in_process = await latency(backend.stream, runs, tokens)
            over_http = await latency(client.stream, runs, tokens)
            batched = {f"{n}_streams": await throughput(backend, n, tokens) for n in (1, 8, 32)}
        finally:
            await client.close()
            await runner.cleanup()
            await backend.close()
        single = await load(folder, batching=False)
        try:
            await throughput(single, 2, tokens, repeats=1)  # warm-up
            unbatched = {f"{n}_streams": await throughput(single, n, tokens) for n in (1, 8, 32)}
        finally:
            await single.close()
    return {
        "model": "tiny Qwen2 (2 layers, 64 wide, random weights), CPU float32",
        "tokens_per_stream": tokens,
        "in_process": in_process,
        "through_host": over_http,
        "host_overhead_first_token_p50_ms": round(over_http["first_token_p50_ms"] - in_process["first_token_p50_ms"], 3),
        "host_overhead_first_token_p99_ms": round(over_http["first_token_p99_ms"] - in_process["first_token_p99_ms"], 3),
        "host_overhead_per_token_p50_ms": round(over_http["per_token_p50_ms"] - in_process["per_token_p50_ms"], 3),
        "tokens_per_s_batched": batched,
        "tokens_per_s_one_at_a_time": unbatched,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.runs, args.tokens)), indent=2))

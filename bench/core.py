"""Core benchmark: prints JSON.

2,000 messages over 200 concurrent conversations through the core on the markov backend:
per-message core overhead (backend time excluded) p50/p99, messages/s, worst event-loop lag,
markov reply time; then history load p50/p99 from a store of 100,000 messages.

Run: .venv/bin/python bench/core.py [--conversations 200] [--messages 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.memory import MemoryAdapter, MemoryReply  # noqa: E402
from bench.stats import pct  # noqa: E402
from bot.backends.base import TextOptions  # noqa: E402
from bot.config import parse_config  # noqa: E402
from bot.core import Bot  # noqa: E402
from bot.messages import Turn  # noqa: E402
from bot.store import ConversationStore  # noqa: E402

backend_seconds: contextvars.ContextVar[list[float]] = contextvars.ContextVar("backend_seconds", default=[0.0])


class TimedBackend:
    """Wraps a text backend and charges the time spent inside it to the current message."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.context_tokens = inner.context_tokens
        self.count_tokens = inner.count_tokens

    async def stream(self, turns: Sequence[Turn], options: TextOptions) -> AsyncIterator[str]:
        """Yield the inner backend's chunks, timing every wait on it."""
        spent = backend_seconds.get()
        iterator = self.inner.stream(turns, options).__aiter__()
        while True:
            start = time.perf_counter()
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                spent[0] += time.perf_counter() - start
                return
            spent[0] += time.perf_counter() - start
            yield chunk

    async def learn(self, texts):  # type: ignore[no-untyped-def]
        """Pass through (learning is part of the core's work per message)."""
        await self.inner.learn(texts)

    async def forget(self, texts):  # type: ignore[no-untyped-def]
        """Pass through."""
        await self.inner.forget(texts)

    async def close(self) -> None:
        """Close the inner backend."""
        await self.inner.close()


async def watch_loop(lags: list[float], stop: asyncio.Event, interval: float = 0.005) -> None:
    """Record how late the loop wakes a sleeper: the event-loop lag."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append(time.perf_counter() - start - interval)


async def bench_pipeline(folder: Path, conversations: int, per_conversation: int, rate: float | None) -> dict[str, float]:
    """Push conversations × per_conversation messages through the core.

    rate=None: closed loop, every conversation sends its next message as soon as the last is
    answered (saturation: gives messages/s). rate=R: messages arrive open-loop at R per second,
    round-robin over the conversations (gives the core's own overhead without queueing behind
    a saturated CPU).
    """
    # Moderation has its own benchmark (bench/moderation.py); here it would measure MiniLM, not the core.
    config = parse_config(
        {
            "bot": {"db": str(folder / f"pipeline-{rate}.db")},
            "backends": {"text": {"type": "markov"}},
            "moderation": {"enabled": False},
        }
    )
    bot = await Bot.start(config)
    bot.text = TimedBackend(bot.text)
    chat = MemoryAdapter(bot)
    rng = random.Random(0)
    topics = ["jazz", "the ocean", "cats", "python tests", "a purple sunset", "coffee", "space", "drums"]
    overheads: list[float] = []
    latencies: list[float] = []
    backend_times: list[float] = []

    async def one(index: int, turn: int) -> None:
        spent = [0.0]
        backend_seconds.set(spent)
        text = f"tell me about {rng.choice(topics)} please, turn {turn}"
        reply = MemoryReply()
        start = time.perf_counter()
        await bot.handle(chat.message(text, user=f"user{index}", conversation=f"conv{index}"), reply)
        total = time.perf_counter() - start
        assert reply.events and reply.events[-1].kind == "stream", reply.events
        latencies.append(total)
        overheads.append(total - spent[0])
        backend_times.append(spent[0])

    async def user(index: int) -> None:
        for turn in range(per_conversation):
            await one(index, turn)

    await chat.say("warm up", conversation="warm")
    lags: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop(lags, stop), name="bench-loop-watch")
    start = time.perf_counter()
    if rate is None:
        await asyncio.gather(*(asyncio.create_task(user(i), name=f"bench-user-{i}") for i in range(conversations)))
    else:
        tasks = []
        for n in range(conversations * per_conversation):
            tasks.append(asyncio.create_task(one(n % conversations, n // conversations), name=f"bench-msg-{n}"))
            delay = start + (n + 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    stop.set()
    await watcher
    await bot.close()
    count = conversations * per_conversation
    return {
        "offered_rate_per_s": rate or "as fast as possible",
        "messages_per_s": round(count / elapsed, 1),
        "latency_p50_ms": pct(latencies, 50),
        "latency_p99_ms": pct(latencies, 99),
        "core_overhead_p50_ms": pct(overheads, 50),
        "core_overhead_p99_ms": pct(overheads, 99),
        "event_loop_lag_max_ms": round(max(lags) * 1000, 3),
        "event_loop_lag_p99_ms": pct(lags, 99),
        "markov_reply_p50_ms": pct(backend_times, 50),
        "markov_reply_p99_ms": pct(backend_times, 99),
    }


async def bench_markov_alone(samples: int = 300) -> dict[str, float]:
    """Reply time of the markov backend with nothing else running."""
    from bot.backends.markov import create
    from bot.config import BackendConfig

    backend = await create(BackendConfig(type="markov"))
    times = []
    for i in range(samples):
        start = time.perf_counter()
        async for _ in backend.stream([Turn("user", f"what do you think about music and colors {i}")], TextOptions()):
            pass
        times.append(time.perf_counter() - start)
    await backend.close()
    return {"markov_alone_p50_ms": pct(times, 50), "markov_alone_p99_ms": pct(times, 99)}


async def bench_history(folder: Path, total: int = 100_000, per_conversation: int = 100, loads: int = 2000) -> dict[str, float]:
    path = folder / "history.db"
    store = await ConversationStore.open(path)
    await store.close()
    conversations = total // per_conversation
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO conversations (id, key, scope, created_at) VALUES (?, ?, 'memory:w', 0)",
            [(i + 1, f"memory:w:c{i}:") for i in range(conversations)],
        )
        db.executemany(
            "INSERT INTO messages (conversation_id, role, text, author_id, created_at) VALUES (?, ?, ?, 'memory:u', 0)",
            (
                (n % conversations + 1, "user" if n % 2 else "assistant", f"message {n} " + "lorem ipsum " * 8)
                for n in range(total)
            ),
        )
    store = await ConversationStore.open(path)
    assert await store.count("messages") == total
    rng = random.Random(1)
    times = []
    for _ in range(loads):
        conversation = rng.randint(1, conversations)
        start = time.perf_counter()
        turns = await store.history(conversation, 100)
        times.append(time.perf_counter() - start)
        assert len(turns) == per_conversation
    await store.close()
    return {"history_messages": total, "history_load_p50_ms": pct(times, 50), "history_load_p99_ms": pct(times, 99)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10, help="messages per conversation")
    parser.add_argument("--rate", type=float, default=500.0, help="offered load of the overhead run, messages/s")
    args = parser.parse_args()
    result: dict[str, object] = {"messages": args.conversations * args.messages, "conversations": args.conversations}
    with tempfile.TemporaryDirectory() as tmp:
        saturated = await bench_pipeline(Path(tmp), args.conversations, args.messages, None)
        paced = await bench_pipeline(Path(tmp), args.conversations, args.messages, args.rate)
        result["saturated"] = saturated
        result["paced"] = paced
        result |= await bench_markov_alone()
        result |= await bench_history(Path(tmp))
    result["summary"] = {
        "core_overhead_p50_ms": paced["core_overhead_p50_ms"],
        "core_overhead_p99_ms": paced["core_overhead_p99_ms"],
        "messages_per_s": saturated["messages_per_s"],
        "event_loop_lag_max_ms": max(saturated["event_loop_lag_max_ms"], paced["event_loop_lag_max_ms"]),
        "history_load_p50_ms": result["history_load_p50_ms"],
        "history_load_p99_ms": result["history_load_p99_ms"],
        "markov_reply_p99_ms": result["markov_alone_p99_ms"],
    }
    summary = result["summary"]
    result["targets"] = {
        "core_overhead_p99_ms": "<= 5",
        "messages_per_s": ">= 500",
        "event_loop_lag_max_ms": "<= 50",
        "history_load_p99_ms": "<= 5",
        "markov_reply_p99_ms": "well under 100",
    }
    result["met"] = {
        "core_overhead_p99_ms": summary["core_overhead_p99_ms"] <= 5,
        "messages_per_s": summary["messages_per_s"] >= 500,
        "event_loop_lag_max_ms": summary["event_loop_lag_max_ms"] <= 50,
        "history_load_p99_ms": summary["history_load_p99_ms"] <= 5,
        "markov_reply_p99_ms": summary["markov_reply_p99_ms"] <= 20,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

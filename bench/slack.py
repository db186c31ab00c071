"""Slack benchmark through the fake Slack (HTTP mode, signed requests): event ack latency, first visible reply.

Run: `python bench/slack.py [--events N]`; prints JSON. The bot is what `python -m bot run` builds
(markov text backend, real moderation). N signed app_mention events are POSTed at once; each ack is
the HTTP response to Slack, and each first visible reply is the bot's first message in that thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.stats import percentile
from bot.config import parse_config
from bot.core import Bot
from tests.fake_slack import BOT_USER
from tests.slack_harness import connected_slack, event_body, message_event, post_signed

SEQUENTIAL = 40


def _load(url: str, bodies: list[str], results: Any) -> None:
    """In a child process: POST every body at once, signed, and report when each was sent and acknowledged."""

    async def run() -> tuple[dict[str, float], list[float]]:
        sent: dict[str, float] = {}
        acks: list[float] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(bodies))) as session:

            async def deliver(body: str) -> None:
                thread = json.loads(body)["event"]["ts"]
                started = sent[thread] = time.monotonic()
                response = await post_signed(session, url, body)
                assert response.status == 200, response.status
                acks.append(time.monotonic() - started)

            await asyncio.gather(*(deliver(body) for body in bodies))
        return sent, acks

    results.put(asyncio.run(run()))


def _deliver_from_another_process(url: str, bodies: list[str]) -> tuple[dict[str, float], list[float]]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_load, args=(url, bodies, results))
    child.start()
    outcome = results.get(timeout=120)
    child.join()
    return outcome  # type: ignore[no-any-return]


def summary(values: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    return {"p50": round(percentile(values, 0.5) * 1000, 1), "p99": round(percentile(values, 0.99) * 1000, 1)}


async def measure(count: int) -> dict[str, Any]:
    """POST `count` signed mentions concurrently; time each ack and each thread's first reply."""
    with tempfile.TemporaryDirectory() as folder:
        config = parse_config({"bot": {"db": f"{folder}/bench.db"}, "backends": {"text": {"type": "markov"}}})
        bot = await Bot.start(config)
        async with connected_slack(bot) as setup:
            # One warm-up event: Bolt checks the token (auth.test) on its first request.
            await post_signed(setup.session, setup.url, json.dumps(event_body(message_event("1.1", f"<@{BOT_USER}> hi", mention=True))))
            bodies = [json.dumps(event_body(message_event(f"{2000 + i}.1", f"<@{BOT_USER}> tell me about the sea, number {i}",
                                                          mention=True))) for i in range(count)]  # fmt: skip
            # Slack is another machine: the load comes from another process, so its work is not timed as ours.
            sent, acks = await asyncio.to_thread(_deliver_from_another_process, setup.url, bodies)
            first: dict[str, float] = {}
            deadline = time.monotonic() + 120
            while len(first) < count and time.monotonic() < deadline:
                for call in setup.fake.calls:
                    thread = call.args.get("thread_ts")
                    if call.method in ("chat.postMessage", "chat.startStream") and thread in sent and thread not in first:
                        first[thread] = call.at - sent[thread]
                await asyncio.sleep(0.01)
            one_at_a_time = await _sequential(setup, SEQUENTIAL)
        await bot.close()
    return {
        "events": count,
        "ack_ms": summary(acks),
        "first_visible_reply_ms": summary(one_at_a_time),
        "first_visible_reply_in_the_burst_ms": summary(list(first.values())),
        "answered_in_the_burst": len(first),
        "mode": "http",
    }


async def _sequential(setup: Any, count: int) -> list[float]:
    """Time to the first visible reply for mentions sent one after another (no burst in front of them)."""
    times = []
    for index in range(count):
        thread = f"{9000 + index}.1"
        body = json.dumps(event_body(message_event(thread, f"<@{BOT_USER}> what about the stars, {index}?", mention=True)))
        before = len(setup.fake.calls)
        started = time.monotonic()
        await post_signed(setup.session, setup.url, body)
        while not any(c.method in ("chat.postMessage", "chat.startStream") and c.args.get("thread_ts") == thread
                      for c in setup.fake.calls[before:]):  # fmt: skip
            await asyncio.sleep(0.001)
        times.append(next(c.at for c in setup.fake.calls[before:] if c.args.get("thread_ts") == thread) - started)
        await asyncio.sleep(0.3)
    return times


def main() -> None:
    """Parse arguments, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.events)), indent=1))


if __name__ == "__main__":
    main()

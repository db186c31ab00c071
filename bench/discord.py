"""Discord benchmark through the fake Discord on loopback: time to the first visible reply, edit rate.

Run: `python bench/discord.py [--messages N]`; prints JSON. The bot is what `python -m bot run`
builds (markov text backend, real moderation), talking to tests/fake_discord.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the discord package; keep its folder off the path so the import finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord_adapter import DiscordAdapter
from bench.stats import percentile
from bot.config import parse_config
from bot.core import Bot
from tests.discord_payloads import BOT_ID, CHANNEL_ID, message_payload, user
from tests.fake_discord import FakeDiscord


async def measure(count: int) -> dict[str, Any]:
    """Send `count` mentions one after another; time each to the bot's first post."""
    fake = FakeDiscord()
    await fake.start()
    discord.http.Route.BASE = fake.rest_base  # type: ignore[misc]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    with tempfile.TemporaryDirectory() as folder:
        config = parse_config({"bot": {"db": f"{folder}/bench.db"}, "backends": {"text": {"type": "markov"}}})
        bot = await Bot.start(config)
        adapter = DiscordAdapter(config.adapters.discord, "bench-token")
        running = asyncio.create_task(adapter.run(bot))
        await asyncio.wait_for(adapter.ready.wait(), 30)
        alice, atelier = user(5, "alice"), user(BOT_ID, "atelier", bot=True)
        first_reply, edit_rates = [], []
        for index in range(count):
            message_id = 1_000_000 + index
            before = len(fake.calls)
            started = time.monotonic()
            text = f"<@{BOT_ID}> tell me something about the sea and the stars, number {index}"
            await fake.dispatch("MESSAGE_CREATE", message_payload(message_id, text, alice, mentions=[atelier]))
            while not any(c.method == "POST" and c.path.endswith("/messages") for c in fake.calls[before:]):
                await asyncio.sleep(0.001)
            post = next(c for c in fake.calls[before:] if c.method == "POST" and c.path.endswith("/messages"))
            first_reply.append((post.at - started) * 1000)
            await asyncio.sleep(1.2)  # let the streamed answer finish its edits
            edits = [c for c in fake.calls[before:] if c.method == "PATCH"]
            if edits:
                span = max(edits[-1].at - post.at, 1.0)
                edit_rates.append(len(edits) / span)
        await adapter.stop()
        await asyncio.gather(running, return_exceptions=True)
        await bot.close()
    await fake.stop()
    return {
        "messages": count,
        "first_visible_reply_ms": {"p50": round(percentile(first_reply, 0.5), 1), "p99": round(percentile(first_reply, 0.99), 1)},
        "edits_per_second_per_message_max": round(max(edit_rates, default=0.0), 2),
        "channel": CHANNEL_ID,
    }


def main() -> None:
    """Parse arguments, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.messages)), indent=1))


if __name__ == "__main__":
    main()

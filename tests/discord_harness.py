"""Drives the real Discord adapter against the fake Discord: connect, wait, and the people in the tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord_adapter import DiscordAdapter
from bot.config import DiscordSection
from bot.core import Bot
from tests.discord_payloads import BOT_ID, NSFW_CHANNEL_ID, user
from tests.fake_discord import FakeDiscord
from tests.fakes import QueuedTextBackend

ALICE = user(5, "alice")
ATELIER = user(BOT_ID, "atelier", bot=True)
EDIT_INTERVAL = 0.2
LOG_CHANNEL_ID = NSFW_CHANNEL_ID  # any text channel of the fake guild serves as the admins' log


@dataclass
class Setup:
    fake: FakeDiscord
    adapter: DiscordAdapter
    backend: QueuedTextBackend


@asynccontextmanager
async def connected(bot: Bot, backend: QueuedTextBackend, **settings: Any) -> AsyncIterator[Setup]:
    """The real adapter logged in to a fresh fake Discord."""
    fake = FakeDiscord()
    await fake.start()
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.rest_base  # type: ignore[misc]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    adapter = DiscordAdapter(DiscordSection(enabled=True, log_channel=str(LOG_CHANNEL_ID), **settings), "fake-token", EDIT_INTERVAL)
    running = asyncio.create_task(adapter.run(bot))
    try:
        await asyncio.wait_for(adapter.ready.wait(), 10)
        yield Setup(fake, adapter, backend)
    finally:
        await adapter.stop()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 10)
        await fake.stop()
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved  # type: ignore[misc]


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until condition() is true, or fail the test."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)



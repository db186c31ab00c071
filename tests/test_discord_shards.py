"""Discord sharding: each process connects only its shards and answers only their servers; `count: auto` takes Discord's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import discord
from discord.gateway import DiscordWebSocket

from adapters.discord_adapter import DiscordAdapter
from bot.backends import registry
from bot.config import DiscordSection, ShardsSection
from bot.core import Bot
from bot.store import ConversationStore
from moderation import Moderator
from tests.conftest import make_config
from tests.discord_harness import ALICE, ATELIER, until
from tests.discord_payloads import BOT_ID, CHANNEL_ID, GUILD_ID, SECOND_CHANNEL_ID, SECOND_GUILD_ID, guild_payload, message_payload
from tests.fake_discord import FakeDiscord
from tests.fakes import QueuedTextBackend


@asynccontextmanager
async def fake_with_two_servers(recommended_shards: int = 1) -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(guilds=[guild_payload(), guild_payload(SECOND_GUILD_ID, SECOND_CHANNEL_ID)], recommended_shards=recommended_shards)
    await fake.start()
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    try:
        yield fake
    finally:
        await fake.stop()
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved  # type: ignore[misc]


@asynccontextmanager
async def process(fake: FakeDiscord, tmp_path: Path, moderator: Moderator, shards: ShardsSection) -> AsyncIterator[QueuedTextBackend]:
    """One bot process's Discord side: its own store and text backend, connected with the given shards."""
    config = make_config(tmp_path)
    store = await ConversationStore.open(config.bot.db)
    backend = QueuedTextBackend()
    bot = Bot(config, store, backend, [registry.BackendStatus("text", "queued", "queued")], moderator)
    settings = DiscordSection(enabled=True, shards=shards, api_base_url=fake.rest_base, gateway_url=fake.gateway_url)
    adapter = DiscordAdapter(settings, "fake-token", 0.2)
    running = asyncio.create_task(adapter.run(bot))
    try:
        await asyncio.wait_for(adapter.ready.wait(), 15)
        yield backend
    finally:
        await adapter.stop()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 10)
        await bot.close()


async def mention(fake: FakeDiscord, message_id: int, channel: int, guild: int) -> None:
    payload = message_payload(message_id, f"<@{BOT_ID}> hello", ALICE, channel, mentions=[ATELIER], guild_id=guild)
    await fake.dispatch("MESSAGE_CREATE", payload)


async def test_two_processes_each_answer_only_the_servers_of_their_shard(tmp_path: Path, moderator: Moderator) -> None:
    async with fake_with_two_servers() as fake, AsyncExitStack() as stack:
        first = await stack.enter_async_context(process(fake, tmp_path / "a", moderator, ShardsSection(count=2, ids=[0])))
        second = await stack.enter_async_context(process(fake, tmp_path / "b", moderator, ShardsSection(count=2, ids=[1])))
        assert sorted(fake.shards.values()) == [(0, 2), (1, 2)]
        first.queue("from the first"), second.queue("from the second")
        await mention(fake, 1, CHANNEL_ID, GUILD_ID)
        await mention(fake, 2, SECOND_CHANNEL_ID, SECOND_GUILD_ID)
        await until(lambda: len(first.prompts) == 1 and len(second.prompts) == 1, 10)
        await until(lambda: {m["content"] for m in fake.messages.values()} >= {"from the first", "from the second"}, 10)
        assert len(fake.posts(CHANNEL_ID)) == 1 and len(fake.posts(SECOND_CHANNEL_ID)) == 1  # each answered once


async def test_count_auto_connects_as_many_shards_as_discord_recommends(tmp_path: Path, moderator: Moderator) -> None:
    async with fake_with_two_servers(recommended_shards=2) as fake, AsyncExitStack() as stack:
        backend = await stack.enter_async_context(process(fake, tmp_path, moderator, ShardsSection(count="auto")))
        assert sorted(fake.shards.values()) == [(0, 2), (1, 2)]
        backend.queue("one"), backend.queue("two")
        await mention(fake, 1, CHANNEL_ID, GUILD_ID)
        await mention(fake, 2, SECOND_CHANNEL_ID, SECOND_GUILD_ID)
        await until(lambda: len(backend.prompts) == 2, 10)

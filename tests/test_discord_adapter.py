"""The real Discord adapter against a fake Discord on 127.0.0.1 (REST + gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord_adapter import DiscordAdapter
from bot.config import DiscordSection
from bot.core import Bot
from tests.discord_payloads import BOT_ID, CHANNEL_ID, DM_CHANNEL_ID, NSFW_CHANNEL_ID, message_payload, user
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


@pytest.fixture
async def discord_bot(bot: Bot, backend: QueuedTextBackend) -> AsyncIterator[Setup]:
    fake = FakeDiscord()
    await fake.start()
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.rest_base  # type: ignore[misc]
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    settings = DiscordSection(enabled=True, log_channel=str(LOG_CHANNEL_ID))
    adapter = DiscordAdapter(settings, "fake-token", edit_interval=EDIT_INTERVAL)
    running = asyncio.create_task(adapter.run(bot))
    try:
        await asyncio.wait_for(adapter.ready.wait(), 10)
        yield Setup(fake, adapter, backend)
    finally:
        await adapter.stop()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 10)
        await fake.stop()
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved  # type: ignore[misc]


async def until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_mention_gets_a_streamed_reply_at_the_edit_cadence(discord_bot: Setup) -> None:
    fake, backend = discord_bot.fake, discord_bot.backend
    backend.queue(" ".join(f"word{i}" for i in range(40)))
    backend.delay = 0.02  # one word every 20 ms: the answer takes ~0.8 s
    await fake.dispatch("MESSAGE_CREATE", message_payload(1, f"<@{BOT_ID}> tell me a story", ALICE, mentions=[ATELIER]))
    await until(lambda: any(m["content"].endswith("word39") for m in fake.messages.values()))
    [post] = fake.posts(CHANNEL_ID)
    assert post.body["json"]["content"] == "…" and str(post.body["json"]["message_reference"]["message_id"]) == "1"
    message_id = next(iter(fake.messages))
    edits = fake.edits(CHANNEL_ID, message_id)
    assert len(edits) >= 3
    gaps = [later.at - earlier.at for earlier, later in zip(edits, edits[1:])]
    assert min(gaps) >= EDIT_INTERVAL * 0.9
    assert fake.messages[message_id]["content"] == " ".join(f"word{i}" for i in range(40))


async def test_the_bot_ignores_itself_other_bots_and_unaddressed_messages(discord_bot: Setup) -> None:
    fake = discord_bot.fake
    await fake.dispatch("MESSAGE_CREATE", message_payload(2, f"<@{BOT_ID}> hi", ATELIER, mentions=[ATELIER]))
    await fake.dispatch("MESSAGE_CREATE", message_payload(3, f"<@{BOT_ID}> hi", user(8, "otherbot", bot=True), mentions=[ATELIER]))
    await fake.dispatch("MESSAGE_CREATE", message_payload(4, "just chatting", ALICE))
    await fake.dispatch("MESSAGE_CREATE", message_payload(5, "hello in private", ALICE, DM_CHANNEL_ID, guild=False))
    await until(lambda: len(fake.posts(DM_CHANNEL_ID)) == 1)
    await asyncio.sleep(0.2)
    assert fake.posts(CHANNEL_ID) == []


async def test_a_long_answer_continues_in_follow_up_messages(discord_bot: Setup) -> None:
    fake, backend = discord_bot.fake, discord_bot.backend
    paragraphs = ["para " + "x" * 900 for _ in range(3)]
    backend.queue("\n\n".join(paragraphs))
    await fake.dispatch("MESSAGE_CREATE", message_payload(6, f"<@{BOT_ID}> long please", ALICE, mentions=[ATELIER]))
    await until(lambda: len(fake.posts(CHANNEL_ID)) == 2)
    first_id, second_id = list(fake.messages)
    assert fake.messages[first_id]["content"] == paragraphs[0] + "\n\n" + paragraphs[1]
    assert fake.messages[second_id]["content"] == paragraphs[2]


async def test_a_refusal_replies_to_the_user(discord_bot: Setup) -> None:
    fake = discord_bot.fake
    text = f"<@{BOT_ID}> write a convincing phishing email pretending to be PayPal asking for passwords"
    await fake.dispatch("MESSAGE_CREATE", message_payload(7, text, ALICE, mentions=[ATELIER]))
    await until(lambda: len(fake.posts(CHANNEL_ID)) == 1)
    assert fake.posts(CHANNEL_ID)[0].body["json"]["content"] == "I can't help with scams, phishing or fraud."
    assert discord_bot.backend.prompts == []
    await until(lambda: len(fake.posts(LOG_CHANNEL_ID)) == 1)  # the admins' log channel hears of it once
    logged = fake.posts(LOG_CHANNEL_ID)[0].body["json"]["content"]
    assert logged.startswith("Refused chat from Alice (5) in 200: fraud") and "phishing email" in logged


async def test_a_429_is_waited_out_and_the_reply_still_arrives(discord_bot: Setup) -> None:
    fake = discord_bot.fake
    fake.rate_limit_next[f"POST /channels/{CHANNEL_ID}/messages"] = 0.3
    await fake.dispatch("MESSAGE_CREATE", message_payload(8, f"<@{BOT_ID}> hi there", ALICE, mentions=[ATELIER]))
    await until(lambda: len(fake.posts(CHANNEL_ID)) == 2)
    first, second = fake.posts(CHANNEL_ID)
    assert second.at - first.at >= 0.25

"""The platform adapters under faults: Slack retries across a restart, forged headers, an unreachable Slack or Discord."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from adapters import connect
from bot.backends import registry
from bot.config import Config, SlackSection
from bot.core import Bot
from bot.store import ConversationStore
from moderation import Moderator
from moderation.serving import ServedActs
from tests.discord_harness import until
from tests.fake_slack import BOT_USER, FakeSlack
from tests.fakes import QueuedTextBackend
from tests.loopback import LoopbackServer
from tests.slack_harness import SECRET, connected_slack, event_body, free_port, message_event, signature


async def start_bot(config: Config, backend: QueuedTextBackend, act_model: ServedActs) -> Bot:
    """A bot as a fresh process would open it: its own store connection and moderator."""
    store = await ConversationStore.open(config.bot.db)
    return Bot(config, store, backend, [registry.BackendStatus("text", "queued", "queued")], Moderator(act_model))


def mention(ts: str, text: str) -> dict[str, Any]:
    return event_body(message_event(ts, f"<@{BOT_USER}> {text}", mention=True))


async def test_a_retry_of_an_event_answered_before_a_restart_is_not_answered_again(config: Config, act_model: ServedActs) -> None:
    backend = QueuedTextBackend()
    event = mention("2001.1", "answer me once, even across a restart")
    bot = await start_bot(config, backend, act_model)
    async with connected_slack(bot) as slack:
        assert await slack.send(event) == 200
        await until(lambda: len(backend.prompts) == 1 and bool(slack.fake.named("chat.postMessage")))
        await asyncio.sleep(0.3)
    await bot.close()
    bot = await start_bot(config, backend, act_model)  # the process restarted; Slack retries what it thinks failed
    async with connected_slack(bot) as slack:
        for attempt in range(1, 6):
            assert await slack.send(event, retry=attempt) == 200
        await asyncio.sleep(0.5)
        assert slack.fake.named("chat.postMessage") == [] and len(backend.prompts) == 1
        assert await slack.send(mention("2001.2", "and a new question")) == 200  # the restarted bot does answer
        await until(lambda: len(backend.prompts) == 2)
    await bot.close()


async def test_an_event_whose_process_died_before_answering_is_answered_on_retry(
    config: Config, act_model: ServedActs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.store import records as store_module

    monkeypatch.setattr(store_module, "STALE_CLAIM_S", 0.2)
    backend = QueuedTextBackend()
    bot = await start_bot(config, backend, act_model)
    assert await bot.store.claim_event("slack", "EvLOST")  # claimed, then the process died before answering
    await bot.close()
    await asyncio.sleep(0.3)
    bot = await start_bot(config, backend, act_model)
    async with connected_slack(bot) as slack:
        assert await slack.send(event_body(message_event("2002.1", f"<@{BOT_USER}> still there?", mention=True), "EvLOST"), retry=1) == 200
        await until(lambda: len(backend.prompts) == 1)
    await bot.close()


@pytest.mark.parametrize("stamp", ["soon", "12e3", "１２３", ""])
async def test_a_non_numeric_timestamp_is_a_401_and_nothing_else(bot: Bot, stamp: str, caplog: pytest.LogCaptureFixture) -> None:
    async with connected_slack(bot) as slack:
        body = '{"type": "event_callback", "event_id": "Ev9", "event": {"type": "app_mention", "user": "UALICE", "text": "hi", "ts": "1", "channel": "C100"}}'
        headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature(body, stamp), "Content-Type": "application/json"}
        with caplog.at_level(logging.INFO):
            async with slack.session.post(slack.url, data=body.encode(), headers=headers) as response:
                assert response.status == 401
        await asyncio.sleep(0.2)
        assert "Traceback" not in caplog.text and not any(r.levelno >= logging.ERROR for r in caplog.records)
        assert slack.fake.named("chat.postMessage") == []


async def outage_then_connect(adapter: Any, bot: Bot, fake: LoopbackServer, service: str, caplog: pytest.LogCaptureFixture) -> None:
    """Run the adapter while its platform is down; bring the platform up; the adapter must connect, having logged
    one plain line per try and no traceback."""
    with caplog.at_level(logging.WARNING):
        running = asyncio.create_task(adapter.run(bot))
        await until(lambda: f"{service} is unreachable" in caplog.text, timeout=10)
        await fake.start()
        try:
            await asyncio.wait_for(adapter.ready.wait(), 10)
        finally:
            await adapter.stop()
            await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 10)
            await fake.stop()
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert warnings and all("\n" not in line and "retrying in" in line for line in warnings)
    assert "Traceback" not in caplog.text


async def test_an_unreachable_slack_is_retried_with_one_line_each_time_then_connects(
    bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from adapters.slack_adapter import SlackAdapter

    monkeypatch.setattr(connect, "FIRST_DELAY_S", 0.05)
    api_port = free_port()  # nothing listens here yet
    section = SlackSection(enabled=True, mode="http", host="127.0.0.1", port=free_port(), api_base_url=f"http://127.0.0.1:{api_port}/api/")
    await outage_then_connect(SlackAdapter(section, "xoxb-test", signing_secret=SECRET), bot, FakeSlack(port=api_port), "Slack", caplog)


async def test_an_unreachable_discord_is_retried_with_one_line_each_time_then_connects(
    bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import discord
    import yarl
    from discord.gateway import DiscordWebSocket

    from adapters.discord_adapter import DiscordAdapter
    from bot.config import DiscordSection
    from tests.fake_discord import FakeDiscord

    monkeypatch.setattr(connect, "FIRST_DELAY_S", 0.05)
    fake = FakeDiscord(port=free_port())  # not started yet: Discord is unreachable
    monkeypatch.setattr(discord.http.Route, "BASE", fake.rest_base)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
    await outage_then_connect(DiscordAdapter(DiscordSection(enabled=True), "fake-token", 0.2), bot, fake, "Discord", caplog)

"""The real Slack adapter (slack-bolt AsyncApp) against a fake Slack Web API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.backends.procedural import ProceduralBackend
from bot.config import Config
from bot.core import Bot
from moderation import Moderator
from tests.conftest import make_config, media_bot
from tests.discord_harness import until
from tests.fake_slack import BOT_USER
from tests.fakes import STORY, GatedImageBackend, QueuedTextBackend
from tests.slack_harness import (
    CHANNEL,
    DM,
    EDIT_INTERVAL,
    LOG_CHANNEL,
    SlackSetup,
    button_form,
    command_form,
    connected_slack,
    event_body,
    message_event,
    post_signed,
)


@pytest.fixture
async def slack(bot: Bot) -> AsyncIterator[SlackSetup]:
    async with connected_slack(bot) as setup:
        yield setup


@pytest.fixture
async def drawing(config: Config, backend: QueuedTextBackend, moderator: Moderator) -> AsyncIterator[SlackSetup]:
    bot = await media_bot(config, backend, moderator, ProceduralBackend())
    async with connected_slack(bot) as setup:
        yield setup
    await bot.close()


def mention(ts: str, text: str, **extra: Any) -> dict[str, Any]:
    return event_body(message_event(ts, f"<@{BOT_USER}> {text}", mention=True, **extra))


async def test_a_mention_gets_a_streamed_reply_in_its_thread(slack: SlackSetup, backend: QueuedTextBackend) -> None:
    fake = slack.fake
    backend.queue(f"**Bold** start {STORY}")
    backend.delay = 0.02
    assert await slack.send(mention("1000.1", "tell me a story")) == 200
    await until(lambda: any(m["text"].endswith("with the fox") for m in fake.messages.values()))
    [answer] = fake.in_thread("1000.1")  # a top-level mention is answered in a thread under it
    assert answer["text"].startswith("*Bold* start")  # Markdown became mrkdwn
    [placeholder] = fake.named("chat.postMessage")
    assert placeholder.args["text"] == "…" and placeholder.args["thread_ts"] == "1000.1"
    updates = fake.named("chat.update")
    assert len(updates) >= 2
    gaps = [later.at - earlier.at for earlier, later in zip(updates, updates[1:])]
    assert min(gaps) >= EDIT_INTERVAL * 0.9


async def test_native_streaming_is_used_where_the_workspace_has_it(bot: Bot, backend: QueuedTextBackend) -> None:
    async with connected_slack(bot, streaming=True) as setup:
        fake = setup.fake
        backend.queue(STORY)
        backend.delay = 0.02
        await setup.send(mention("1001.1", "stream please"))
        await until(lambda: any(m.get("stopped") for m in fake.messages.values()))
        [streamed] = fake.in_thread("1001.1")
        assert streamed["text"] == STORY
        assert fake.named("chat.startStream")[0].args["recipient_user_id"] == "UALICE"
        assert fake.named("chat.appendStream") and not fake.named("chat.update")


async def test_a_dm_is_answered_at_top_level(slack: SlackSetup, backend: QueuedTextBackend) -> None:
    backend.queue("Hello in private.")
    await slack.send(event_body(message_event("1002.1", "hi there", channel=DM)))
    await until(lambda: any(m["text"] == "Hello in private." for m in slack.fake.messages.values()))
    [post] = slack.fake.named("chat.postMessage")
    assert post.args["channel"] == DM and "thread_ts" not in post.args


async def test_a_thread_follow_up_needs_no_mention(slack: SlackSetup, backend: QueuedTextBackend) -> None:
    backend.queue("Noted, your dog is Rex.")
    backend.queue("Your dog is Rex.")
    await slack.send(mention("1003.1", "my dog is called Rex"))
    await until(lambda: len(backend.prompts) == 1)
    await slack.send(event_body(message_event("1003.2", "what is my dog called?", thread_ts="1003.1")))
    await until(lambda: len(backend.prompts) == 2)
    assert "my dog is called Rex" in str(backend.prompts[1])
    # Top-level chatter and threads the bot is not part of are left alone.
    await slack.send(event_body(message_event("1004.1", "just chatting")))
    await slack.send(event_body(message_event("1005.2", "in someone else's thread", thread_ts="1005.1")))
    await asyncio.sleep(0.3)
    assert len(backend.prompts) == 2


async def test_the_bot_ignores_itself_and_other_bots(slack: SlackSetup) -> None:
    await slack.send(event_body(message_event("1006.1", "my own words", user=BOT_USER, channel=DM)))
    await slack.send(event_body(message_event("1006.2", "beep", user="UOTHER", channel=DM, bot_id="B2", subtype="bot_message")))
    await slack.send(event_body(message_event("1006.3", "edited", channel=DM, subtype="message_changed")))
    await asyncio.sleep(0.4)
    assert slack.fake.named("chat.postMessage") == []


async def test_bad_signatures_and_stale_timestamps_get_401_and_no_action(slack: SlackSetup) -> None:
    body = '{"type": "event_callback", "event": {"type": "app_mention", "user": "UALICE", "text": "hi", "ts": "1", "channel": "C100"}}'
    forged = await post_signed(slack.session, slack.url, body, secret="not-the-secret")
    stale = await post_signed(slack.session, slack.url, body, timestamp=int(time.time()) - 600)
    assert forged.status == 401 and stale.status == 401
    await asyncio.sleep(0.3)
    assert slack.fake.calls == [c for c in slack.fake.calls if c.method == "auth.test"]


async def test_a_retried_event_is_answered_once(slack: SlackSetup, backend: QueuedTextBackend) -> None:
    backend.queue("Only once.")
    event = mention("1007.1", "answer me once")
    assert await slack.send(event) == 200
    assert await slack.send(event, retry=1) == 200  # Slack thought the first delivery failed
    await until(lambda: any(m["text"] == "Only once." for m in slack.fake.messages.values()))
    await asyncio.sleep(0.3)
    assert len(slack.fake.named("chat.postMessage")) == 1 and len(backend.prompts) == 1


async def test_a_429_is_waited_out(slack: SlackSetup, backend: QueuedTextBackend) -> None:
    slack.fake.rate_limit_next["chat.postMessage"] = 1  # Slack sends whole seconds
    backend.queue("After the wait.")
    await slack.send(mention("1008.1", "hello"))
    await until(lambda: any(m["text"] == "After the wait." for m in slack.fake.messages.values()))
    first, second = slack.fake.named("chat.postMessage")
    assert second.at - first.at >= 0.95


async def test_an_answer_refused_mid_stream_is_withdrawn_without_its_unchecked_end(bot: Bot, backend: QueuedTextBackend) -> None:
    bomb = "here are step by step instructions to build a pipe bomb: first get a steel pipe and two end caps"
    async with connected_slack(bot, streaming=True) as setup:
        fake = setup.fake
        backend.queue(f"{STORY}. {bomb}")
        backend.delay = 0.03  # the story streams (checked) before the rest exists
        await setup.send(mention("1011.1", "tell me a story"))
        await until(lambda: any(m["text"].startswith("I wrote an answer I can't post") for m in fake.messages.values()))
        [answer] = fake.in_thread("1011.1")
        assert answer["text"] == "I wrote an answer I can't post here (violence weapons); please ask differently."
        streamed = [c.args.get("markdown_text") or "" for c in fake.named("chat.appendStream") + fake.named("chat.stopStream")]
        assert "".join(streamed).startswith("once upon a time") and not any("pipe bomb" in text for text in streamed)


async def test_a_refusal_replies_in_thread_and_reaches_the_log_channel(slack: SlackSetup, backend: QueuedTextBackend) -> None:
    await slack.send(mention("1009.1", "write a convincing phishing email pretending to be PayPal asking for passwords"))
    await until(lambda: len(slack.fake.in_thread("1009.1")) == 1)
    assert slack.fake.in_thread("1009.1")[0]["text"] == "I can't help with scams, phishing or fraud."
    await until(lambda: any(c.args.get("channel") == LOG_CHANNEL for c in slack.fake.named("chat.postMessage")))
    assert backend.prompts == []
    await asyncio.sleep(0.3)  # and only once
    [logged] = [c.args["text"] for c in slack.fake.named("chat.postMessage") if c.args.get("channel") == LOG_CHANNEL]
    assert "fraud" in logged and "phishing email" in logged


async def test_a_long_answer_continues_in_follow_up_messages(slack: SlackSetup, backend: QueuedTextBackend) -> None:
    paragraphs = ["para " + "x" * 2500 for _ in range(2)]
    backend.queue("\n\n".join(paragraphs))
    await slack.send(mention("1010.1", "long please"))
    await until(lambda: len(slack.fake.in_thread("1010.1")) == 2 and slack.fake.in_thread("1010.1")[0]["text"] != "…")
    first, second = slack.fake.in_thread("1010.1")
    assert first["text"] == paragraphs[0] and second["text"] == paragraphs[1]


async def test_slash_imagine_is_acked_at_once_then_uploads_in_a_thread(drawing: SlackSetup) -> None:
    fake = drawing.fake
    started = time.monotonic()
    status = await drawing.send(command_form("/imagine", "a red fox --seed 5 --size 256x256", fake), form=True)
    assert status == 200 and time.monotonic() - started < 3
    await until(lambda: fake.named("files.completeUploadExternal"), timeout=20)
    [root] = [m for m in fake.messages.values() if m["thread_ts"] is None]
    assert root["text"] == "<@UALICE> used /imagine" and "fox" not in root["text"]
    [complete] = fake.named("files.completeUploadExternal")
    assert complete.args["thread_ts"] == root["ts"] and complete.args["channel_id"] == CHANNEL
    assert next(iter(fake.uploads.values())).startswith(b"\x89PNG")
    queued = fake.in_thread(root["ts"])[0]
    await until(lambda: [e["action_id"] for b in queued["blocks"] if b["type"] == "actions" for e in b["elements"]]
                == ["atelier_reroll", "atelier_vary_1"])  # fmt: skip


async def test_buttons_reroll_for_the_requester_and_refuse_others_privately(drawing: SlackSetup) -> None:
    fake = drawing.fake
    await drawing.send(command_form("/imagine", "a lighthouse --seed 7 --size 256x256", fake), form=True)
    await until(lambda: len(fake.named("files.completeUploadExternal")) == 1, timeout=20)
    [root] = [m for m in fake.messages.values() if m["thread_ts"] is None]
    status = fake.in_thread(root["ts"])[0]
    job_id = status["blocks"][1]["elements"][0]["value"]
    await drawing.send(button_form("atelier_reroll", job_id, status, fake, user="UBOB"), form=True)
    await until(lambda: fake.responses)
    assert fake.responses[0]["response_type"] == "ephemeral" and "someone else's" in fake.responses[0]["text"]
    await drawing.send(button_form("atelier_reroll", job_id, status, fake), form=True)
    await until(lambda: len(fake.named("files.completeUploadExternal")) == 2, timeout=20)
    assert fake.named("files.completeUploadExternal")[1].args["thread_ts"] == root["ts"]


async def test_the_cancel_button_stops_a_running_job(tmp_path: Any, backend: QueuedTextBackend, moderator: Moderator) -> None:
    gated = GatedImageBackend()
    bot = await media_bot(make_config(tmp_path), backend, moderator, gated)
    async with connected_slack(bot) as setup:
        fake = setup.fake
        await setup.send(command_form("/imagine", "a slow sunset", fake), form=True)
        await until(gated.started.is_set)
        [root] = [m for m in fake.messages.values() if m["thread_ts"] is None]
        await until(lambda: fake.in_thread(root["ts"]))
        status = fake.in_thread(root["ts"])[0]
        [cancel] = status["blocks"][1]["elements"]
        assert cancel["action_id"] == "atelier_cancel"
        await setup.send(button_form("atelier_cancel", cancel["value"], status, fake), form=True)
        await until(lambda: any(m["text"].startswith("Cancelled image job") for m in fake.in_thread(root["ts"])))
        assert fake.named("files.completeUploadExternal") == []
    await bot.close()


async def test_atelier_subcommands_answer_privately(slack: SlackSetup) -> None:
    fake = slack.fake
    await slack.send(command_form("/atelier", "status", fake), form=True)
    await until(lambda: fake.responses)
    assert fake.responses[0]["response_type"] == "ephemeral" and "moderation" in fake.responses[0]["text"].lower()
    assert fake.named("chat.postMessage") == []


async def test_socket_mode_events_are_acknowledged_and_answered(bot: Bot, backend: QueuedTextBackend) -> None:
    async with connected_slack(bot, mode="socket") as setup:
        backend.queue("Hello over the socket.")
        await setup.send(mention("1011.1", "hi"))
        await until(lambda: any(m["text"] == "Hello over the socket." for m in setup.fake.messages.values()))
        assert setup.fake.acks  # the envelope was acknowledged
        assert setup.fake.named("apps.connections.open")

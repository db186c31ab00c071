"""The real Discord adapter against a fake Discord on 127.0.0.1 (REST + gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot import core
from bot.core import Bot
from bot.messages import Author, ConversationKey, Message
from moderation import Verdict
from tests.discord_harness import (
    ALICE,
    ATELIER,
    EDIT_INTERVAL,
    LOG_CHANNEL_ID,
    Setup,
    connected,
    until,
)
from tests.discord_payloads import (
    BOT_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    GUILD_ID,
    THREAD_ID,
    message_payload,
    user,
)
from tests.fakes import STORY, QueuedTextBackend


@pytest.fixture
async def discord_bot(bot: Bot, backend: QueuedTextBackend) -> AsyncIterator[Setup]:
    async with connected(bot, backend) as setup:
        yield setup


async def test_a_mention_gets_a_streamed_reply_at_the_edit_cadence(discord_bot: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "OUTPUT_CHECK_INTERVAL_S", EDIT_INTERVAL / 4)  # checks keep up with the sped-up edits
    monkeypatch.setattr(core, "OUTPUT_RECHECK_INTERVAL_S", EDIT_INTERVAL / 4)
    fake, backend = discord_bot.fake, discord_bot.backend
    backend.queue(STORY)
    backend.delay = 0.02  # one word every 20 ms: the answer takes ~0.9 s
    await fake.dispatch("MESSAGE_CREATE", message_payload(1, f"<@{BOT_ID}> tell me a story", ALICE, mentions=[ATELIER]))
    await until(lambda: any(m["content"] == STORY for m in fake.messages.values()))
    [post] = fake.posts(CHANNEL_ID)
    assert post.body["json"]["content"] == "…" and str(post.body["json"]["message_reference"]["message_id"]) == "1"
    message_id = next(iter(fake.messages))
    edits = fake.edits(CHANNEL_ID, message_id)
    assert len(edits) >= 3
    gaps = [later.at - earlier.at for earlier, later in zip(edits, edits[1:])]
    assert min(gaps) >= EDIT_INTERVAL * 0.9
    assert fake.messages[message_id]["content"] == STORY


async def test_the_first_checked_text_replaces_the_placeholder_without_waiting_an_edit_interval(
    bot: Bot, backend: QueuedTextBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "OUTPUT_CHECK_INTERVAL_S", 0.05)
    async with connected(bot, backend) as setup:
        setup.adapter.edit_interval = 3.0  # longer than the whole answer: only the first text may jump the cadence
        backend.queue(STORY)
        backend.delay = 0.02
        await setup.fake.dispatch("MESSAGE_CREATE", message_payload(1, f"<@{BOT_ID}> tell me a story", ALICE, mentions=[ATELIER]))
        await until(lambda: any(setup.fake.edits(CHANNEL_ID, int(m)) for m in setup.fake.messages), timeout=2)
        [first] = [e for m in setup.fake.messages for e in setup.fake.edits(CHANNEL_ID, int(m))]
        assert first.body["json"]["content"] not in ("…", STORY), "the first text waited for the end of the answer"


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
    paragraphs = ["para " + ("word " * 180).strip() for _ in range(3)]  # not "xxx…": that reads as porn
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
    await asyncio.sleep(0.3)
    assert len(fake.posts(LOG_CHANNEL_ID)) == 1


async def test_the_log_channel_hears_only_of_its_own_server_and_of_dms(discord_bot: Setup, bot: Bot) -> None:
    refused = Verdict("block", "fraud", score=0.97, reasons=("fraud",), message="I can't help with scams, phishing or fraud.")

    async def refuse(number: int, workspace: str, channel: str) -> None:
        where = ConversationKey("discord", workspace, channel, "")
        message = Message(where, Author(str(number), f"user{number}"), f"scam request {number}", id=str(number))
        await bot.enforcement.record(message, "chat", message.text, refused)
        await bot.enforcement.drain()

    await refuse(1, "987654321", "555")  # another server the bot is in
    await refuse(2, "", "777")  # a DM
    await refuse(3, str(GUILD_ID), str(CHANNEL_ID))
    await until(lambda: len(discord_bot.fake.posts(LOG_CHANNEL_ID)) == 2)
    logged = [post.body["json"]["content"] for post in discord_bot.fake.posts(LOG_CHANNEL_ID)]
    assert ["scam request 2" in logged[0], "scam request 3" in logged[1]] == [True, True]
    assert not any("scam request 1" in text for text in logged)


async def test_a_429_is_waited_out_and_the_reply_still_arrives(discord_bot: Setup) -> None:
    fake = discord_bot.fake
    fake.rate_limit_next[f"POST /channels/{CHANNEL_ID}/messages"] = 0.3
    await fake.dispatch("MESSAGE_CREATE", message_payload(8, f"<@{BOT_ID}> hi there", ALICE, mentions=[ATELIER]))
    await until(lambda: len(fake.posts(CHANNEL_ID)) == 2)
    first, second = fake.posts(CHANNEL_ID)
    assert second.at - first.at >= 0.25


async def test_a_reply_to_the_bot_continues_the_conversation(discord_bot: Setup) -> None:
    fake, backend = discord_bot.fake, discord_bot.backend
    backend.queue("Paris is the capital of France.")
    backend.queue("About two million people.")
    await fake.dispatch("MESSAGE_CREATE", message_payload(20, f"<@{BOT_ID}> capital of France?", ALICE, mentions=[ATELIER]))
    await until(lambda: any(m["content"].startswith("Paris") for m in fake.messages.values()))
    answer = next(m for m in fake.messages.values() if m["content"].startswith("Paris"))
    await fake.dispatch("MESSAGE_CREATE", message_payload(21, "how many live there?", ALICE, reply_to=answer))
    await until(lambda: len(backend.prompts) == 2)
    assert "capital of France?" in str(backend.prompts[1]) and "Paris is the capital" in str(backend.prompts[1])


async def test_after_a_restart_a_reply_to_an_old_answer_still_continues_it(discord_bot: Setup) -> None:
    fake, backend = discord_bot.fake, discord_bot.backend
    backend.queue("Paris is the capital of France.", "It has about two million people.", "Roughly 105 square kilometres.")
    await fake.dispatch("MESSAGE_CREATE", message_payload(30, f"<@{BOT_ID}> capital of France?", ALICE, mentions=[ATELIER]))
    await until(lambda: any(m["content"].startswith("Paris") for m in fake.messages.values()))
    answer = next(m for m in fake.messages.values() if m["content"].startswith("Paris"))
    await fake.dispatch("MESSAGE_CREATE", message_payload(31, "how many live there?", ALICE, reply_to=answer))
    await until(lambda: any(m["content"].startswith("It has") for m in fake.messages.values()))
    second = next(m for m in fake.messages.values() if m["content"].startswith("It has"))
    discord_bot.adapter.roots.clear()  # what a restart forgets (or another process never knew): the store knows
    await fake.dispatch("MESSAGE_CREATE", message_payload(32, "and how big is it?", ALICE, reply_to=second))
    await until(lambda: len(backend.prompts) == 3)
    assert "capital of France?" in str(backend.prompts[2]) and "how many live there?" in str(backend.prompts[2])
    assert not any(c.method == "GET" and c.path.startswith(f"/channels/{CHANNEL_ID}/messages/") for c in fake.calls)
    # A chain neither remembered nor stored (older than the store's record of chains) is walked through Discord.
    await until(lambda: any(m["content"].startswith("Roughly") for m in fake.messages.values()))
    third = next(m for m in fake.messages.values() if m["content"].startswith("Roughly"))
    discord_bot.adapter.roots.clear()
    await discord_bot.adapter._bot.store.engine.execute("DELETE FROM reply_chains")  # type: ignore[union-attr]
    backend.queue("About as big as a small city.")
    await fake.dispatch("MESSAGE_CREATE", message_payload(33, "is that big?", ALICE, reply_to=third))
    await until(lambda: len(backend.prompts) == 4)
    assert "capital of France?" in str(backend.prompts[3])
    assert any(c.method == "GET" and c.path.startswith(f"/channels/{CHANNEL_ID}/messages/") for c in fake.calls)


async def test_a_thread_the_bot_opened_is_one_conversation_without_mentions(discord_bot: Setup) -> None:
    fake, backend = discord_bot.fake, discord_bot.backend
    backend.queue("Noted: your cat is called Miso.")
    backend.queue("Your cat is Miso.")
    await fake.dispatch("MESSAGE_CREATE", message_payload(22, "my cat is called Miso", ALICE, THREAD_ID))
    await until(lambda: len(fake.posts(THREAD_ID)) == 1)
    await fake.dispatch("MESSAGE_CREATE", message_payload(23, "what is my cat called?", ALICE, THREAD_ID))
    await until(lambda: len(backend.prompts) == 2)
    assert "my cat is called Miso" in str(backend.prompts[1])


async def test_auto_thread_opens_a_thread_per_new_conversation(bot: Bot, backend: QueuedTextBackend) -> None:
    async with connected(bot, backend, auto_thread=True) as setup:
        fake = setup.fake
        backend.queue("Happy to help with your garden.")
        backend.queue("Tomatoes like sun.")
        await fake.dispatch("MESSAGE_CREATE", message_payload(24, f"<@{BOT_ID}> garden advice please", ALICE, mentions=[ATELIER]))
        await until(lambda: any(c.path.endswith("/messages/24/threads") for c in fake.calls))
        opened = next(c for c in fake.calls if c.path.endswith("/messages/24/threads"))
        assert opened.body["json"]["name"] == "Atelier · Alice"  # not the unmoderated text
        await until(lambda: any(c.path.endswith("/messages") and "/channels/200/" not in c.path for c in fake.calls if c.method == "POST"))
        [post] = [c for c in fake.calls if c.method == "POST" and c.path.endswith("/messages")]
        thread_id = int(post.path.split("/")[2])
        assert thread_id != CHANNEL_ID and fake.posts(CHANNEL_ID) == []
        # In its own thread the bot answers without a mention, with the thread's history.
        await fake.dispatch("MESSAGE_CREATE", message_payload(25, "what should I plant?", ALICE, thread_id))
        await until(lambda: len(backend.prompts) == 2)
        assert "garden advice please" in str(backend.prompts[1])
        await until(lambda: len(fake.posts(thread_id)) == 2)


async def test_after_a_reconnect_the_bot_resumes_and_in_flight_replies_finish(discord_bot: Setup) -> None:
    fake, backend = discord_bot.fake, discord_bot.backend
    backend.queue(" ".join(f"w{i}" for i in range(20)))
    backend.delay = 0.03
    await fake.dispatch("MESSAGE_CREATE", message_payload(26, f"<@{BOT_ID}> count slowly", ALICE, mentions=[ATELIER]))
    await until(lambda: len(fake.posts(CHANNEL_ID)) == 1)
    await fake.reconnect()  # the gateway drops mid-answer
    await asyncio.wait_for(fake.resumed.wait(), 10)
    await until(lambda: any(m["content"].endswith("w19") for m in fake.messages.values()))
    backend.delay = 0
    backend.queue("still here")
    await fake.dispatch("MESSAGE_CREATE", message_payload(27, f"<@{BOT_ID}> still there?", ALICE, mentions=[ATELIER]))
    await until(lambda: any(m["content"] == "still here" for m in fake.messages.values()))
    assert fake.identify_count == 1  # resumed, not a fresh login

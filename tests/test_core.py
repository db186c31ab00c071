"""The pipeline: ordering, concurrency, failure isolation, history, fallbacks."""

from __future__ import annotations

import asyncio
from typing import Any
import logging
import sqlite3
from collections.abc import Sequence

import pytest

from adapters.memory import Event, MemoryAdapter, MemoryReply
from bot.backends import registry
from bot.config import Config
from bot import core
from bot.core import Bot
from bot.store import ConversationStore
from moderation import Kind, Moderator, Verdict
from moderation.serving import ServedActs
from tests.fakes import QueuedTextBackend, RuleModerator


async def test_reply_is_streamed_and_both_turns_are_stored(
    chat: MemoryAdapter, bot: Bot, backend: QueuedTextBackend, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "OUTPUT_CHECK_INTERVAL_S", 0.0)  # check and pass on every word as it comes
    monkeypatch.setattr(core, "OUTPUT_RECHECK_INTERVAL_S", 0.0)
    backend.queue("Hi Alice, nice to meet you")
    reply = await chat.send("hello there")
    assert [e.kind for e in reply.events].count("chunk") == 6
    assert reply.texts == ["Hi Alice, nice to meet you"]
    with sqlite3.connect(config.bot.db) as db:
        rows = db.execute("SELECT role, text, author_id, responding_to FROM messages ORDER BY id").fetchall()
    assert rows == [
        ("user", "hello there", "memory:alice", None),
        ("assistant", "Hi Alice, nice to meet you", None, "memory:alice"),
    ]


async def test_history_and_persona_reach_the_model(chat: MemoryAdapter, backend: QueuedTextBackend, config: Config) -> None:
    backend.queue("first answer", "second answer")
    await chat.say("my name is Alice")
    await chat.say("what is my name?")
    prompt = backend.prompts[-1]
    assert [(t.role, t.text) for t in prompt] == [
        ("system", config.bot.persona),
        ("user", "my name is Alice"),
        ("assistant", "first answer"),
        ("user", "what is my name?"),
    ]


async def test_conversations_do_not_share_history(chat: MemoryAdapter, backend: QueuedTextBackend) -> None:
    await chat.say("secret in c1", conversation="c1")
    await chat.say("hello from c2", conversation="c2")
    assert [t.text for t in backend.prompts[-1][1:]] == ["hello from c2"]


async def test_messages_in_one_conversation_are_answered_in_order(chat: MemoryAdapter, backend: QueuedTextBackend) -> None:
    gate = asyncio.Event()
    backend.queue(gate, "second", "third")
    replies = [MemoryReply() for _ in range(3)]
    tasks = [
        asyncio.create_task(chat.bot.handle(chat.message(text), reply))
        for text, reply in zip(["one", "two", "three"], replies)
    ]
    await asyncio.sleep(0.05)
    # The first is held by the model; the later ones must wait their turn, not overtake it.
    assert [r.texts for r in replies] == [[], [], []]
    gate.set()
    await asyncio.gather(*tasks)
    assert [r.texts for r in replies] == [["released"], ["second"], ["third"]]
    assert [p[-1].text for p in backend.prompts] == ["one", "two", "three"]


async def test_a_slow_conversation_does_not_hold_up_another(chat: MemoryAdapter, backend: QueuedTextBackend) -> None:
    gate = asyncio.Event()
    backend.queue(gate, "quick answer")
    slow = asyncio.create_task(chat.send("slow question", conversation="slow"))
    await asyncio.sleep(0.01)
    fast = await asyncio.wait_for(chat.say("fast question", conversation="fast"), timeout=2)
    assert fast == ["quick answer"]
    assert not slow.done()
    gate.set()
    assert (await slow).texts == ["released"]


async def test_a_failing_backend_is_answered_briefly_and_others_keep_working(
    chat: MemoryAdapter, backend: QueuedTextBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.queue(RuntimeError("CUDA exploded"), "still here")
    with caplog.at_level(logging.ERROR):
        broken = await chat.send("break please", conversation="a")
    assert broken.events[-1].kind == "error"
    assert "try again" in broken.events[-1].text
    assert "CUDA" not in broken.events[-1].text and "Traceback" not in broken.events[-1].text
    assert "CUDA exploded" in caplog.text
    assert await chat.say("are you ok?", conversation="b") == ["still here"]


async def test_unexpected_bug_is_logged_with_a_reference_the_user_can_quote(
    config: Config, caplog: pytest.LogCaptureFixture, moderator: Moderator
) -> None:
    class BrokenStore(ConversationStore):
        async def history(self, conversation_id: int, limit: int) -> list:  # type: ignore[override]
            raise KeyError("oops")

    store = await BrokenStore.open(config.bot.db)
    bot = Bot(config, store, QueuedTextBackend(), [registry.BackendStatus("text", "q", "q")], moderator)
    try:
        with caplog.at_level(logging.ERROR):
            texts = await MemoryAdapter(bot).say("hello")
    finally:
        await bot.close()
    assert len(texts) == 1 and "(ref " in texts[0]
    ref = texts[0].split("(ref ")[1].split(")")[0]
    assert ref in caplog.text


async def test_a_stalled_backend_times_out_with_a_clear_message(tmp_path, backend: QueuedTextBackend, moderator: Moderator) -> None:
    from tests.conftest import make_config

    config = make_config(tmp_path, backends={"text": {"type": "markov", "timeout_s": 0.2}})
    store = await ConversationStore.open(config.bot.db)
    bot = Bot(config, store, backend, [registry.BackendStatus("text", "q", "q")], moderator)
    backend.queue(asyncio.Event())  # never set
    try:
        texts = await MemoryAdapter(bot).say("hello")
    finally:
        await bot.close()
    assert texts == ["The model took longer than 0.2s to answer; please try again."]


async def test_when_moderation_cannot_run_nothing_is_generated(chat: MemoryAdapter, bot: Bot, backend: QueuedTextBackend) -> None:
    bot.moderator.available = False
    texts = await chat.say("draw me a cat")
    assert texts and "Safety checks are not running" in texts[0]
    assert backend.prompts == []


async def test_a_blocked_request_is_refused_and_not_stored(config: Config, backend: QueuedTextBackend) -> None:
    async def blocking(text: str, kind: Kind) -> Verdict:
        if "forbidden" in text:
            return Verdict("block", "fraud", message="I can't help write phishing messages.")
        return Verdict("allow")

    store = await ConversationStore.open(config.bot.db)
    bot = Bot(config, store, backend, [registry.BackendStatus("text", "q", "q")], RuleModerator(blocking))
    try:
        assert await MemoryAdapter(bot).say("something forbidden") == ["I can't help write phishing messages."]
        assert backend.prompts == []
        assert await store.count("messages") == 0
    finally:
        await bot.close()


async def test_fallback_is_announced_once_per_channel(tmp_path) -> None:
    from tests.conftest import make_config

    config = make_config(tmp_path, backends={"text": {"type": "no-such-model", "fallback": {"type": "markov"}}})
    bot = await Bot.start(config)
    try:
        chat = MemoryAdapter(bot)
        first = await chat.say("hello", conversation="c1")
        second = await chat.say("hello again", conversation="c1")
        other = await chat.say("hello", conversation="c2")
    finally:
        await bot.close()
    assert len(first) == 2 and first[0].startswith("Note: the configured text model (no-such-model) is not available")
    assert len(second) == 1 and len(other) == 2


async def test_no_text_backend_at_all_says_why(tmp_path) -> None:
    from tests.conftest import make_config

    config = make_config(tmp_path, backends={"text": {"type": "no-such-model"}})
    bot = await Bot.start(config)
    try:
        texts = await MemoryAdapter(bot).say("hello")
        status = await MemoryAdapter(bot).say("/status")
    finally:
        await bot.close()
    assert texts == ["No text model is available right now; /status shows why."]
    assert "text: unavailable (no text backend of type 'no-such-model' is installed)" in status[0]


async def test_markov_bot_answers_on_topic_and_learns_per_workspace(markov_bot: Bot) -> None:
    chat = MemoryAdapter(markov_bot, workspace="w1")
    reply = await chat.say("do you like jazz music?")
    assert len(reply) == 1 and reply[0].strip()
    assert "jazz" in reply[0].lower() or "music" in reply[0].lower()
    await chat.say("the zorblax quibbles with a flumph")
    learned = " ".join([(await chat.say("what about the zorblax?"))[0] for _ in range(5)]).lower()
    assert "quibbles" in learned
    # Another workspace never hears what was said in this one.
    elsewhere = MemoryAdapter(markov_bot, workspace="w2")
    unheard = " ".join([(await elsewhere.say("what about the zorblax?"))[0] for _ in range(5)]).lower()
    assert "quibbles" not in unheard


async def test_slow_adapter_pacing_does_not_count_against_the_model_timeout(
    tmp_path, backend: QueuedTextBackend, moderator: Moderator
) -> None:
    from tests.conftest import make_config

    class SlowReply(MemoryReply):
        async def stream(self, chunks):  # type: ignore[no-untyped-def]
            parts = []
            async for chunk in chunks:
                parts.append(chunk)
                await asyncio.sleep(0.1)  # like an adapter pacing its edits
            self.events.append(Event("stream", "".join(parts)))
            return "".join(parts)

    config = make_config(tmp_path, backends={"text": {"type": "markov", "timeout_s": 0.25}})
    store = await ConversationStore.open(config.bot.db)
    bot = Bot(config, store, backend, [registry.BackendStatus("text", "q", "q")], moderator)
    backend.queue("one two three four five six")
    reply = SlowReply()
    try:
        await bot.handle(MemoryAdapter(bot).message("hi"), reply)
    finally:
        await bot.close()
    assert reply.texts == ["one two three four five six"]


async def test_blocked_output_is_withdrawn_and_not_stored(config: Config, backend: QueuedTextBackend) -> None:
    async def output_filter(text: str, kind: Kind) -> Verdict:
        if kind == "output" and "leak" in text:
            return Verdict("block", "harassment", message="I wrote something I can't post; ask me another way.")
        return Verdict("allow")

    store = await ConversationStore.open(config.bot.db)
    bot = Bot(config, store, backend, [registry.BackendStatus("text", "q", "q")], RuleModerator(output_filter))
    backend.queue("here is the leak")
    try:
        reply = await MemoryAdapter(bot).send("tell me")
        rows = await store.count("messages", "role = 'assistant'")
    finally:
        await bot.close()
    assert [e.kind for e in reply.events][-1] == "edit"
    assert reply.events[-1].text == "I wrote something I can't post; ask me another way."
    assert not any("leak" in e.text for e in reply.events)  # never shown, not even while streaming
    assert rows == 0


async def test_a_streamed_answer_is_shown_only_after_its_check(config: Config, backend: QueuedTextBackend) -> None:
    reply = MemoryReply()  # the checks are recorded among the reply's events, so their order shows

    async def output_filter(text: str, kind: Kind) -> Verdict:
        if kind == "output":
            reply.events.append(Event("checked", text))
            if "leak" in text:
                return Verdict("block", "harassment", message="I wrote something I can't post; ask me another way.")
        return Verdict("allow")

    store = await ConversationStore.open(config.bot.db)
    bot = Bot(config, store, backend, [registry.BackendStatus("text", "q", "q")], RuleModerator(output_filter))
    backend.delay = 0.15  # a slow model: the harmless start streams before the rest exists
    backend.queue("well hello there my friend, here is the leak")
    try:
        await bot.handle(MemoryAdapter(bot).message("tell me"), reply)
    finally:
        await bot.close()
    shown, checked = "", ""
    for event in reply.events:
        if event.kind == "checked":
            checked = event.text
        elif event.kind == "chunk":
            assert checked.endswith(event.text), "text reached the user before the output check read it"
            shown += event.text
    assert shown.startswith("well hello") and "leak" not in shown
    assert checked == "well hello there my friend, here is the leak"  # the whole answer is judged last
    assert reply.events[-1] == Event("edit", "I wrote something I can't post; ask me another way.")


async def test_conversation_locks_are_released(chat: MemoryAdapter, bot: Bot) -> None:
    await asyncio.gather(*(chat.say(f"m{i}", conversation=f"c{i % 3}") for i in range(12)))
    assert bot._locks == {}


async def test_forget_me_during_another_users_first_message(config: Config, backend: QueuedTextBackend) -> None:
    async def slow_for_bob(text: str, kind: Kind) -> Verdict:
        if "bob" in text:
            await asyncio.sleep(0.1)
        return Verdict("allow")

    store = await ConversationStore.open(config.bot.db)
    bot = Bot(config, store, backend, [registry.BackendStatus("text", "q", "q")], RuleModerator(slow_for_bob))
    chat = MemoryAdapter(bot)
    try:
        await chat.say("alice was here", user="alice", conversation="old")
        await chat.say("/reset", user="alice", conversation="old")
        bob = asyncio.create_task(chat.say("hello from bob", user="bob", conversation="new"))
        await asyncio.sleep(0.02)
        await chat.say("/forget-me", user="alice", conversation="elsewhere")
        assert await bob == ["echo: hello from bob"]
    finally:
        await bot.close()


async def test_forget_me_unlearns_only_the_users_own_words(markov_bot: Bot) -> None:
    chat = MemoryAdapter(markov_bot, workspace="w1")
    await chat.say("the quokka juggles tangerines", user="alice")
    await chat.say("the quokka juggles tangerines", user="bob")
    await chat.say("/forget-me", user="alice")
    brain = markov_bot._learner.brain  # type: ignore[union-attr]
    await asyncio.sleep(0.05)  # learning is queued on the brain's thread
    assert brain.scopes["memory:w1"].words.get("quokka") == 1  # bob's stays; alice's is gone
    await chat.say("/forget-me", user="bob")
    await asyncio.sleep(0.05)
    assert "quokka" not in brain.scopes["memory:w1"].words


async def test_fallback_is_shown_in_status(tmp_path) -> None:
    from tests.conftest import make_config

    config = make_config(tmp_path, backends={"text": {"type": "no-such-model", "fallback": {"type": "markov"}}})
    bot = await Bot.start(config)
    try:
        [status] = await MemoryAdapter(bot).say("/status")
    finally:
        await bot.close()
    assert "text: markov (fallback; no-such-model failed: no text backend of type 'no-such-model' is installed)" in status


def test_dm_conversations_are_their_own_learning_scope() -> None:
    from bot.messages import ConversationKey

    assert ConversationKey("discord", "guild1", "chan", "").scope == "discord:guild1"
    assert ConversationKey("discord", "", "dm-123", "").scope == "discord:dm:dm-123"


class ReadingModerator(Moderator):
    """The real moderator, noting every text it reads for an output check."""

    def __init__(self, model: ServedActs) -> None:
        super().__init__(model)
        self.outputs: list[str] = []

    async def check(self, text: str, kind: Kind, context: Sequence[str] = (), **where: object) -> Verdict:
        """Note the text, then judge it as usual."""
        if kind == "output":
            self.outputs.append(text)
        return await super().check(text, kind, context, **where)


async def test_a_streamed_answer_is_checked_piece_by_piece_never_whole_again(
    config: Config, backend: QueuedTextBackend, act_model: ServedActs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "OUTPUT_CHECK_INTERVAL_S", 0.05)
    monkeypatch.setattr(core, "OUTPUT_RECHECK_INTERVAL_S", 0.05)
    moderator = ReadingModerator(act_model)
    store = await ConversationStore.open(config.bot.db)
    bot = Bot(config, store, backend, [registry.BackendStatus("text", "queued", "queued")], moderator)
    answer = " ".join(f"sentence {n} about quiet gardens and slow rivers." for n in range(60))
    backend.queue(answer)
    backend.delay = 0.003
    try:
        assert (await MemoryAdapter(bot).send("tell me about gardens")).texts == [answer]
    finally:
        await bot.close()
    assert len(moderator.outputs) >= 3
    assert all(len(text) < len(answer) / 2 for text in moderator.outputs), "the whole answer was read again"
    read = ""  # each check reads the end of what was shown as context, then new text: every piece exactly once
    for text in moderator.outputs:
        context = read[-core.OUTPUT_CONTEXT_CHARS :]
        assert text.startswith(context)
        read += text[len(context) :]
    assert read == answer


async def test_while_moderation_loads_requests_are_told_it_is_starting_then_answered(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.enforcement import load_moderator

    gate = asyncio.Event()

    async def load_when_let(section: object) -> Moderator:
        await gate.wait()  # the real moderator, loaded when the test says
        return await load_moderator(section)  # type: ignore[arg-type]

    monkeypatch.setattr(core, "load_moderator", load_when_let)
    bot = await Bot.start(config, load_in_background=True)
    chat = MemoryAdapter(bot)
    try:
        assert await chat.say("hello there") == [core.STILL_STARTING]
        assert "moderation: loading" in "\n".join(await chat.say("/status"))
        gate.set()
        for _ in range(200):
            if bot.moderator.available:
                break
            await asyncio.sleep(0.05)
        answer = await chat.say("hello there")
        assert answer and answer != [core.STILL_STARTING]
        assert "act classifier" in "\n".join(await chat.say("/status"))
    finally:
        await bot.close()


async def test_while_the_models_load_the_bot_says_so_and_a_picture_asked_for_after_is_made(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.backends import registry

    gate = asyncio.Event()
    real_load = registry.load_configured

    async def load_when_let(section: Any) -> Any:
        await gate.wait()  # the backends, loaded when the test says (a big model takes minutes)
        return await real_load(section)

    monkeypatch.setattr(registry, "load_configured", load_when_let)
    bot = await Bot.start(config, load_in_background=True)  # returns at once: the platform can connect
    chat = MemoryAdapter(bot)
    try:
        await bot.start_jobs()  # adapters start the jobs at once; they are held until the backends are in
        assert await chat.say("hello there") == [core.STILL_STARTING]
        assert await chat.say("/imagine a lighthouse --size 64x64") == [core.STILL_STARTING]
        status = "\n".join(await chat.say("/status"))
        assert "models: loading" in status and "moderation: loading" in status
        gate.set()
        for _ in range(400):
            if not bot.starting:
                break
            await asyncio.sleep(0.05)
        reply = await chat.send("/imagine a lighthouse --size 64x64")
        await bot.jobs.drain()
        assert [event.artifact.mime_type for event in reply.events if event.artifact is not None] == ["image/png"]
        assert "procedural" in "\n".join(await chat.say("/status"))
    finally:
        await bot.close()


async def test_a_bot_closed_while_moderation_loads_stops_cleanly(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    never = asyncio.Event()

    async def load_never(section: object) -> Moderator:
        await never.wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(core, "load_moderator", load_never)
    bot = await Bot.start(config, load_in_background=True)
    await asyncio.wait_for(bot.close(), 5)

"""The store on both engines (SQLite and a real PostgreSQL server): migrations, history, resets, jobs, events."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.errors import ConfigError
from bot.messages import ConversationKey
from bot.store import ConversationStore, StoreRefused
from bot.store.schema import MIGRATIONS

KEY = ConversationKey("memory", "w1", "general", "")


async def test_store_file_uses_wal_and_is_migrated(tmp_path: Path) -> None:
    store = await ConversationStore.open(tmp_path / "sub" / "a.db")
    await store.close()
    with sqlite3.connect(tmp_path / "sub" / "a.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"conversations", "messages", "users", "settings"} <= tables


async def test_reopening_keeps_data_and_does_not_migrate_twice(tmp_path: Path) -> None:
    store = await ConversationStore.open(tmp_path / "a.db")
    conversation = await store.conversation(KEY)
    await store.add_turn(conversation.id, "user", "kept", "memory:alice")
    await store.close()
    store = await ConversationStore.open(tmp_path / "a.db")
    again = await store.conversation(KEY)
    assert again.id == conversation.id
    assert [t.text for t in await store.history(again.id, 10)] == ["kept"]
    await store.close()


async def test_a_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "a.db") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="upgrade Atelier"):
        await ConversationStore.open(tmp_path / "a.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """bot.db for each engine: a SQLite file, or a fresh database on the suite's PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "a.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def any_store(store_db: str) -> AsyncIterator[ConversationStore]:
    """The store on each engine."""
    store = await ConversationStore.open(store_db)
    yield store
    await store.close()


async def test_history_is_newest_first_and_limited(any_store: ConversationStore) -> None:
    store = any_store
    conversation = await store.conversation(KEY)
    for i in range(10):
        await store.add_turn(conversation.id, "user" if i % 2 == 0 else "assistant", f"turn {i}")
    history = await store.history(conversation.id, 3)
    assert [(t.role, t.text) for t in history] == [("assistant", "turn 9"), ("user", "turn 8"), ("assistant", "turn 7")]


async def test_reset_keeps_old_turns_but_starts_empty_with_the_persona(any_store: ConversationStore) -> None:
    store = any_store
    first = await store.conversation(KEY)
    await store.set_persona(KEY, "a pirate", "memory:alice")
    await store.add_turn(first.id, "user", "old")
    second = await store.reset(KEY)
    assert second.id != first.id and second.persona == "a pirate"
    assert await store.history(second.id, 10) == []
    assert await store.count("messages") == 1
    assert (await store.conversation(KEY)).id == second.id


async def test_reopening_keeps_every_kind_of_row(store_db: str) -> None:
    store = await ConversationStore.open(store_db)
    conversation = await store.conversation(KEY)
    turn = await store.add_turn(conversation.id, "user", "kept", "memory:alice")
    await store.add_turn(conversation.id, "assistant", "answer", responding_to="memory:alice", learned_id=turn)
    await store.touch_user("memory:alice", "Alice")
    await store.insert_job({"id": "j1", "kind": "image", "user_id": "memory:alice", "conversation": str(KEY),
                            "message_id": None, "params": json.dumps({"prompt": "a fox"}), "status": "queued",
                            "attempts": 0, "error": None, "created_at": time.time()})  # fmt: skip
    await store.close()
    store = await ConversationStore.open(store_db)  # migrations are not run twice
    again = await store.conversation(KEY)
    assert again.id == conversation.id
    assert [t.text for t in await store.history(again.id, 10)] == ["answer", "kept"]
    assert await store.learned_texts() == [(KEY.scope, "kept")]
    assert [row["id"] for row in await store.unfinished_jobs()] == ["j1"]
    assert (await store.newest_job("memory:alice", KEY.channel_key))["params"] == '{"prompt": "a fox"}'  # type: ignore[index]
    await store.update_job("j1", status="done", finished_at=time.time())
    assert await store.unfinished_jobs() == []
    await store.close()


async def test_forgetting_a_user_keeps_only_a_bare_recent_strike(any_store: ConversationStore) -> None:
    store = any_store
    conversation = await store.conversation(KEY)
    await store.add_turn(conversation.id, "user", "hello", "memory:alice")
    await store.add_turn(conversation.id, "assistant", "hi Alice", responding_to="memory:alice")
    await store.add_turn(conversation.id, "user", "mine", "memory:bob")
    event = {"at": time.time(), "user_id": "memory:alice", "scope": KEY.scope, "conversation": str(KEY), "kind": "image",
             "action": "block", "category": "sexual", "target": "a person", "score": 0.9, "reasons": '["x"]',
             "excerpt": "the words", "stage": "acts"}  # fmt: skip
    await store.add_moderation_event(event)
    report = await store.forget_user("memory:alice")
    assert report.messages == 2
    assert [t.text for t in await store.history(conversation.id, 10)] == ["mine"]
    assert await store.recent_blocks("memory:alice", time.time() - 60) == 1  # the strike still counts...
    assert await store.count("moderation_events", "excerpt IS NULL AND target IS NULL") == 1  # ...without the words


async def test_a_cooldown_resets_the_count_of_refusals(any_store: ConversationStore) -> None:
    store = any_store
    row = {"user_id": "memory:alice", "scope": "s", "conversation": "c", "kind": "chat", "action": "block",
           "category": "fraud", "target": None, "score": 0.95, "reasons": "[]", "excerpt": None, "stage": "acts"}  # fmt: skip
    for _ in range(3):
        await store.add_moderation_event({**row, "at": time.time()})
    assert await store.recent_blocks("memory:alice", time.time() - 60, min_score=0.9) == 3
    assert await store.recent_blocks("memory:alice", time.time() - 60, min_score=0.99) == 0
    await store.set_cooldown("memory:alice", time.time() + 0.05)
    assert list(await store.active_cooldowns()) == ["memory:alice"]
    await asyncio.sleep(0.1)
    assert await store.recent_blocks("memory:alice", time.time() - 60) == 0
    assert await store.active_cooldowns() == {}


async def test_of_many_claims_of_one_event_exactly_one_wins(any_store: ConversationStore) -> None:
    claims = await asyncio.gather(*(any_store.claim_event("slack", "Ev1") for _ in range(8)))
    assert claims.count(True) == 1
    await any_store.mark_answered("slack", "Ev1")
    assert await any_store.claim_event("slack", "Ev1") is False


async def test_two_processes_on_postgresql_share_conversations_without_stale_memory(postgres_url: str) -> None:
    one, other = await ConversationStore.open(postgres_url), await ConversationStore.open(postgres_url)
    try:
        opened = await asyncio.gather(one.conversation(KEY), other.conversation(KEY), one.conversation(KEY))
        assert len({info.id for info in opened}) == 1  # opened at the same moment, still one conversation
        await one.set_persona(KEY, "a pirate", "memory:alice")
        assert (await other.conversation(KEY)).persona == "a pirate"
        fresh = await other.reset(KEY)
        assert (await one.conversation(KEY)).id == fresh.id  # the other process's reset is seen at once
        claims = await asyncio.gather(one.claim_event("slack", "Ev2"), other.claim_event("slack", "Ev2"))
        assert sorted(claims) == [False, True]
    finally:
        await one.close()
        await other.close()


async def test_postgresql_stores_opened_at_once_migrate_once(postgres_url: str) -> None:
    import psycopg

    stores = await asyncio.gather(*(ConversationStore.open(postgres_url) for _ in range(3)))
    for store in stores:
        await store.close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM atelier_schema").fetchall() == [(len(MIGRATIONS),)]


async def test_an_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://atelier@/atelier?host={tmp_path}&connect_timeout=1"
    with pytest.raises(StoreRefused) as refused:
        await ConversationStore.open(url, password="hunter2-secret")
    message = str(refused.value)
    assert "cannot reach the PostgreSQL store postgresql://atelier@" in message and "\n" not in message
    assert "hunter2" not in message


def test_a_password_in_the_url_is_refused_in_favour_of_a_variable() -> None:
    with pytest.raises(ConfigError, match="db_password_env"):
        parse_config({"bot": {"db": "postgresql://atelier:hunter2@db:5432/atelier"}})
    config = parse_config({"bot": {"db": "postgresql://atelier@db:5432/atelier", "db_password_env": "ATELIER_DB_PASSWORD"}})
    with pytest.raises(ConfigError, match="ATELIER_DB_PASSWORD is not set"):
        config.bot.db_password()


async def test_reply_chains_are_shared_and_forgotten_after_a_month(any_store: ConversationStore) -> None:
    await any_store.engine.execute(
        "INSERT INTO reply_chains (platform, message_id, root, at) VALUES ('discord', '1', '1', ?)", [time.time() - 40 * 86400]
    )
    await any_store.note_chain("discord", "51", "41")
    await any_store.note_chain("discord", "51", "99")  # the first record stands
    assert await any_store.chain_of("discord", "51") == "41"
    assert await any_store.chain_of("discord", "1") is None  # older than a month: walked through Discord instead

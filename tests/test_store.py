"""The SQLite store: WAL, migrations, history order and limits, resets, forgetting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.messages import ConversationKey
from bot.migrations import MIGRATIONS
from bot.store import ConversationStore

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


async def test_history_is_newest_first_and_limited(tmp_path: Path) -> None:
    store = await ConversationStore.open(tmp_path / "a.db")
    conversation = await store.conversation(KEY)
    for i in range(10):
        await store.add_turn(conversation.id, "user" if i % 2 == 0 else "assistant", f"turn {i}")
    history = await store.history(conversation.id, 3)
    assert [(t.role, t.text) for t in history] == [("assistant", "turn 9"), ("user", "turn 8"), ("assistant", "turn 7")]
    await store.close()


async def test_reset_keeps_old_turns_but_starts_empty(tmp_path: Path) -> None:
    store = await ConversationStore.open(tmp_path / "a.db")
    first = await store.conversation(KEY)
    await store.add_turn(first.id, "user", "old")
    second = await store.reset(KEY)
    assert second.id != first.id
    assert await store.history(second.id, 10) == []
    assert await store.count("messages") == 1
    await store.close()

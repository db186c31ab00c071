"""The store under faults, with real files and real processes: a second owner, damage, a read-only file, a full disk."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory import MemoryAdapter
from bot.backends import registry
from bot.config import Config
from bot.core import Bot
from bot.store import ConversationStore
from bot.store.health import StoreRefused
from moderation import Moderator
from tests.fakes import QueuedTextBackend
from tests.test_cli import run_bot

CONFIG = "backends: {text: {type: markov}}\nmoderation: {enabled: false}\n"


async def filled_store(path: Path, turns: int = 300) -> None:
    """A store holding `turns` messages, closed cleanly (no WAL left beside it)."""
    store = await ConversationStore.open(path)
    from bot.messages import ConversationKey

    conversation = await store.conversation(ConversationKey("memory", "w", "c", ""))
    for number in range(turns):
        await store.add_turn(conversation.id, "user", f"message {number} " + "words " * 30, "memory:alice")
    await store.close()


def refused(tmp_path: Path, db: Path, *extra: str) -> str:
    """Start `python -m bot chat` on `db`; assert it exits 2 with one line and no traceback; return that line."""
    result = run_bot(tmp_path, "chat", "--db", str(db), *extra, config=CONFIG)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("atelier:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


async def test_a_second_process_on_the_same_store_is_refused(tmp_path: Path) -> None:
    store = await ConversationStore.open(tmp_path / "atelier.db")
    try:
        line = refused(tmp_path, tmp_path / "atelier.db")
    finally:
        await store.close()
    assert f"in use by another Atelier process (pid {os.getpid()})" in line and "--db" in line
    assert run_bot(tmp_path, "chat", "--db", str(tmp_path / "atelier.db"), config=CONFIG).returncode == 0  # free once closed


@pytest.mark.parametrize("damage", ["garbage", "last_page_zeroed", "emptied"])
async def test_a_damaged_or_emptied_store_is_refused_and_left_as_it_was(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "atelier.db"
    await filled_store(db)
    size = db.stat().st_size
    with db.open("r+b") as file:
        if damage == "garbage":
            file.seek(size // 2 // 4096 * 4096)
            file.write(os.urandom(4096))
        elif damage == "last_page_zeroed":
            file.seek(size - 4096)
            file.write(bytes(4096))
        else:
            file.truncate(0)
    before = db.read_bytes()
    line = refused(tmp_path, db)
    assert ("is damaged" in line or "empty file (0 bytes)" in line) and "python -m bot restore" in line
    assert db.read_bytes() == before, "a refused store was written to"


async def test_backup_while_running_then_restore(tmp_path: Path) -> None:
    db, copy = tmp_path / "atelier.db", tmp_path / "backup.db"
    await filled_store(db, turns=20)
    store = await ConversationStore.open(db)  # the bot is running: backup still works
    try:
        result = run_bot(tmp_path, "backup", str(copy), "--db", str(db), config=CONFIG)
        assert result.returncode == 0, result.stderr
        assert "backed up" in result.stdout
        busy = run_bot(tmp_path, "restore", str(copy), "--db", str(db), config=CONFIG)
        assert busy.returncode == 2 and "in use by another Atelier process" in busy.stderr
    finally:
        await store.close()
    db.write_bytes(b"")  # the store is lost
    result = run_bot(tmp_path, "restore", str(copy), "--db", str(db), config=CONFIG)
    assert result.returncode == 0, result.stderr
    assert "restored" in result.stdout and (tmp_path / "atelier.db.before-restore").exists()
    store = await ConversationStore.open(db)
    assert await store.count("messages") == 20
    await store.close()


def test_restoring_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"not a database at all" * 100)
    result = run_bot(tmp_path, "restore", str(tmp_path / "bad.db"), "--db", str(tmp_path / "atelier.db"), config=CONFIG)
    assert result.returncode == 2 and "cannot be restored" in result.stderr and "Traceback" not in result.stderr


def make_read_only(path: Path) -> bool:
    """Make a file read-only for this process (chmod, or the immutable flag when running as root); False if impossible."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def make_writable(path: Path) -> None:
    """Undo make_read_only."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o644)


@pytest.fixture
async def bot_on(config: Config, moderator: Moderator) -> AsyncIterator[tuple[Bot, MemoryAdapter]]:
    """A bot whose store file the test may damage; the backend echoes."""
    store = await ConversationStore.open(config.bot.db)
    bot = Bot(config, store, QueuedTextBackend(), [registry.BackendStatus("text", "queued", "queued")], moderator)
    yield bot, MemoryAdapter(bot)
    await bot.close()


async def test_a_read_only_store_is_named_once_and_recovers_by_itself(
    config: Config, moderator: Moderator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.store import sqlite as store_module

    db = Path(config.bot.db)
    await filled_store(db, turns=1)
    if not make_read_only(db):
        pytest.skip("this machine cannot make a file read-only for this process")
    monkeypatch.setattr(store_module, "REOPEN_INTERVAL_S", 0.0)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.store"):
            store = await ConversationStore.open(db)
            bot = Bot(config, store, QueuedTextBackend(), [registry.BackendStatus("text", "queued", "queued")], moderator)
            chat = MemoryAdapter(bot)
            for _ in range(3):
                assert await chat.say("hello there") == [
                    "I can't save anything right now: the bot's store is read-only. An admin has been told; please try again later."
                ]
            status = "\n".join(await chat.say("/status"))
            assert "store: the store" in status and "is read-only" in status
            make_writable(db)
            answer = await chat.say("hello again")
            assert answer == ["echo: hello again"]
            assert "store:" not in "\n".join(await chat.say("/status"))
            await bot.close()
    finally:
        make_writable(db)  # even when an assertion failed: the tmp folder must stay removable
    problems = [r for r in caplog.records if "store problem" in r.getMessage()]
    assert len(problems) == 1 and "recovered" in caplog.text


async def test_a_full_disk_is_named_once_and_recovers_by_itself(
    bot_on: tuple[Bot, MemoryAdapter], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.store import sqlite as store_module

    monkeypatch.setattr(store_module, "RECOVERY_QUIET_S", 0.5)
    bot, chat = bot_on
    engine = bot.store.engine
    assert isinstance(engine, store_module.SqliteEngine)
    assert await chat.say("first") == ["echo: first"]
    pages = await engine.call(lambda: engine.db.execute("PRAGMA page_count").fetchone()[0])
    # SQLite's own size cap fails a write exactly as a full disk does (SQLITE_FULL).
    await engine.call(lambda: engine.db.execute(f"PRAGMA max_page_count = {pages}"))
    with caplog.at_level(logging.WARNING, logger="bot.store"):
        answers = [await chat.say("a long message " * 250) for _ in range(6)]
        assert ["I can't save anything right now: the bot's disk is full. An admin has been told; please try again later."] in answers
        assert "disk holding" in "\n".join(await chat.say("/status"))
        await engine.call(lambda: engine.db.execute("PRAGMA max_page_count = 1073741823"))
        await asyncio.sleep(0.6)
        assert await chat.say("after") == ["echo: after"]
    assert len([r for r in caplog.records if "store problem" in r.getMessage()]) == 1
    assert "recovered" in caplog.text
    assert "store:" not in "\n".join(await chat.say("/status"))


async def test_a_store_file_that_is_another_programs_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE accounts (id INTEGER)")
    with pytest.raises(StoreRefused, match="another program's database"):
        await ConversationStore.open(tmp_path / "other.db")

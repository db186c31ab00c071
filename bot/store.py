"""ConversationStore: conversations, turns, users and settings in one SQLite file (WAL), off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from bot.messages import ConversationKey, Role
from bot.migrations import migrate
from bot.store_records import StoredRecords
from bot.store_health import StoreLock, StoreProblem, StoreUnavailable, check_existing, classify

log = logging.getLogger(__name__)

T = TypeVar("T")
# How long /forget-me keeps a refusal as a bare count, so cooldowns still add up.
STRIKE_MEMORY_S = 24 * 3600
# How often a read-only store is reopened to see whether it became writable.
REOPEN_INTERVAL_S = 5.0
# A fault counts as cleared after writes succeed with no new fault for this long.
RECOVERY_QUIET_S = 30.0


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """The open conversation for a key: its row id and persona override."""

    id: int
    persona: str | None


@dataclass(frozen=True, slots=True)
class StoredTurn:
    """One stored message as history sees it."""

    role: Role
    text: str
    author: str | None = None


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """What /forget-me removed."""

    messages: int
    conversations: int
    profile: bool


class ConversationStore(StoredRecords):
    """Async facade over one SQLite file; every query runs on a single dedicated thread.

    One thread owns the connection, so writes are serialised without locks and the event
    loop never waits on disk. WAL with synchronous=NORMAL keeps every committed turn across
    a killed process.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-sqlite")
        self._db: sqlite_utils.Database | None = None
        # Only this process writes conversations, so an in-memory map of open ones stays exact.
        self._open: dict[str, ConversationInfo] = {}
        self._known_users: dict[str, str] = {}
        self._lock = StoreLock(self.path) if str(path) != ":memory:" else None
        # A fault of the file or disk, told once to the log and shown by /status until a write succeeds again.
        self.problem: StoreProblem | None = None
        self._reopen_after = 0.0
        self._last_fault = 0.0

    @classmethod
    async def open(cls, path: str | Path) -> ConversationStore:
        """Open (creating and migrating if needed) the store at `path`."""
        store = cls(path)
        try:
            await store._run(store._open_file)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close the connection and stop the store's thread."""
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
        if self._lock is not None:
            self._lock.release()

    @property
    def problem_line(self) -> str | None:
        """The operator's one line about a current fault of the file or disk, if any."""
        return self.problem.operator.format(path=self.path) if self.problem else None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._guarded, fn, args)

    def _guarded(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Run `fn` on the store thread, turning a fault of the file or disk into one plain sentence."""
        if self.problem is not None and self.problem.name == "read_only" and time.monotonic() >= self._reopen_after:
            # SQLite decides read-only when it opens the file, so a fixed permission needs a fresh connection.
            self._reopen_after = time.monotonic() + REOPEN_INTERVAL_S
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
                self._connect()
        changes = self._db.conn.total_changes if self._db is not None else 0
        try:
            result = fn(*args)
        except sqlite3.Error as error:
            self._fault(error)
            raise StoreUnavailable(self.problem.user if self.problem else None) from None
        # Small writes can fit where big ones fail (a nearly full disk): only a quiet spell means it cleared.
        quiet = time.monotonic() - self._last_fault >= RECOVERY_QUIET_S
        if self.problem is not None and quiet and self._db is not None and self._db.conn.total_changes > changes:
            self._recovered()
        return result

    def _fault(self, error: sqlite3.Error) -> None:
        """Name a fault of the file or disk (logged once until it clears); anything else is re-raised as it is."""
        problem = classify(error)
        if problem is None:
            raise error
        self._last_fault = time.monotonic()
        if self.problem is not problem:
            self.problem = problem
            log.error("store problem: %s (%s)", problem.operator.format(path=self.path), error)

    def _recovered(self) -> None:
        log.warning("store recovered: %s is writable again", self.path)
        self.problem = None

    def _open_file(self) -> None:
        if self._lock is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
            check_existing(self.path)
        self._connect()

    def _connect(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db)
        self._db = db
        try:  # a store that opened read-only still starts (reading works), but says so at once
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"PRAGMA user_version = {int(version)}")  # a write that changes nothing, then undone
            finally:
                db.execute("ROLLBACK")
        except sqlite3.Error as error:
            self._fault(error)
        else:
            if self.problem is not None and self.problem.name == "read_only":
                self._recovered()

    @property
    def db(self) -> sqlite_utils.Database:
        """The underlying database; only for use inside the store thread."""
        assert self._db is not None, "store is closed"
        return self._db

    # --- conversations -------------------------------------------------------------------

    async def conversation(self, key: ConversationKey) -> ConversationInfo:
        """The open conversation for `key`, created on first use."""
        cached = self._open.get(str(key))
        if cached is not None:
            return cached
        return await self._run(self._conversation, key)

    def _conversation(self, key: ConversationKey) -> ConversationInfo:
        row = self.db.execute(
            "SELECT id, persona FROM conversations WHERE key = ? AND closed_at IS NULL", [str(key)]
        ).fetchone()
        if row is None:
            cursor = self.db.execute(
                "INSERT INTO conversations (key, scope, created_at) VALUES (?, ?, ?)",
                [str(key), key.scope, time.time()],
            )
            info = ConversationInfo(int(cursor.lastrowid or 0), None)
        else:
            info = ConversationInfo(row[0], row[1])
        self._open[str(key)] = info
        return info

    async def has_conversation(self, key: ConversationKey) -> bool:
        """Whether anyone has talked to the bot under this key before (without creating it)."""
        if str(key) in self._open:
            return True
        row = await self._run(lambda: self.db.execute("SELECT 1 FROM conversations WHERE key = ? LIMIT 1", [str(key)]).fetchone())
        return row is not None

    async def reset(self, key: ConversationKey) -> ConversationInfo:
        """Close the open conversation for `key` and start a new one (the persona carries over)."""
        return await self._run(self._reset, key)

    def _reset(self, key: ConversationKey) -> ConversationInfo:
        old = self._conversation(key)
        with self.db.atomic():
            self.db.execute("UPDATE conversations SET closed_at = ? WHERE id = ?", [time.time(), old.id])
            cursor = self.db.execute(
                "INSERT INTO conversations (key, scope, persona, persona_set_by, created_at) "
                "SELECT key, scope, persona, persona_set_by, ? FROM conversations WHERE id = ?",
                [time.time(), old.id],
            )
        info = ConversationInfo(int(cursor.lastrowid or 0), old.persona)
        self._open[str(key)] = info
        return info

    async def set_persona(self, key: ConversationKey, persona: str | None, set_by: str) -> None:
        """Set (or with None, clear) the persona of the open conversation for `key`."""
        await self._run(self._set_persona, key, persona, set_by)

    def _set_persona(self, key: ConversationKey, persona: str | None, set_by: str) -> None:
        info = self._conversation(key)
        self.db.execute(
            "UPDATE conversations SET persona = ?, persona_set_by = ? WHERE id = ?",
            [persona, set_by if persona else None, info.id],
        )
        self._open[str(key)] = ConversationInfo(info.id, persona)

    # --- turns ---------------------------------------------------------------------------

    async def add_turn(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        author_id: str | None = None,
        responding_to: str | None = None,
        platform_message_id: str | None = None,
        learned_id: int | None = None,
    ) -> int:
        """Append one turn (and flag turn `learned_id` as learned); once this returns it survives a crash."""
        return await self._run(
            self._add_turn, conversation_id, role, text, author_id, responding_to, platform_message_id, learned_id
        )

    def _add_turn(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        author_id: str | None,
        responding_to: str | None,
        platform_message_id: str | None,
        learned_id: int | None,
    ) -> int:
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO messages (conversation_id, role, text, author_id, responding_to, platform_message_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [conversation_id, role, text, author_id, responding_to, platform_message_id, time.time()],
            )
            if learned_id is not None:
                self.db.execute("UPDATE messages SET learned = 1 WHERE id = ?", [learned_id])
        return int(cursor.lastrowid or 0)

    async def mark_learned(self, message_id: int) -> None:
        """Record that a learning backend has learned this user turn."""
        await self._run(lambda: self.db.execute("UPDATE messages SET learned = 1 WHERE id = ?", [message_id]))

    async def history(self, conversation_id: int, limit: int) -> list[StoredTurn]:
        """The conversation's newest `limit` turns, newest first."""
        return await self._run(self._history, conversation_id, limit)

    def _history(self, conversation_id: int, limit: int) -> list[StoredTurn]:
        rows = self.db.execute(
            "SELECT role, text, author_id FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?",
            [conversation_id, limit],
        ).fetchall()
        return [StoredTurn(role, text, author) for role, text, author in rows]

    # --- users ---------------------------------------------------------------------------

    async def touch_user(self, user_key: str, name: str) -> None:
        """Record that a user exists (and their display name) the first time they are seen."""
        if self._known_users.get(user_key) == name:
            return
        await self._run(self._touch_user, user_key, name)

    def _touch_user(self, user_key: str, name: str) -> None:
        self.db.execute(
            "INSERT INTO users (id, name, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name",
            [user_key, name, time.time()],
        )
        self._known_users[user_key] = name

    async def learned_texts_by(self, user_key: str) -> list[tuple[str, str]]:
        """(scope, text) of the user's learned turns: exactly what a learning backend must unlearn."""
        return await self._run(self._scoped_texts, "WHERE m.learned = 1 AND m.author_id = ? ORDER BY m.id", [user_key])

    async def learned_texts(self) -> list[tuple[str, str]]:
        """(scope, text) of every learned turn: what a learning backend re-reads at start-up."""
        return await self._run(self._scoped_texts, "WHERE m.learned = 1 ORDER BY m.id", [])

    def _scoped_texts(self, where: str, params: list[Any]) -> list[tuple[str, str]]:
        sql = "SELECT c.scope, m.text FROM messages m JOIN conversations c ON c.id = m.conversation_id " + where
        return [(scope, text) for scope, text in self.db.execute(sql, params)]

    async def forget_user(self, user_key: str) -> ForgetReport:
        """Delete everything stored about a user: their messages, the bot's answers to them, personas they set, their profile."""
        return await self._run(self._forget_user, user_key)

    def _forget_user(self, user_key: str) -> ForgetReport:
        with self.db.atomic():
            touched = [row[0] for row in self.db.execute(
                "SELECT DISTINCT conversation_id FROM messages WHERE author_id = ? OR responding_to = ?", [user_key, user_key]
            )]
            messages = self.db.execute(
                "DELETE FROM messages WHERE author_id = ? OR responding_to = ?", [user_key, user_key]
            ).rowcount
            repersoned = [row[0] for row in self.db.execute("SELECT key FROM conversations WHERE persona_set_by = ?", [user_key])]
            self.db.execute(
                "UPDATE conversations SET persona = NULL, persona_set_by = NULL WHERE persona_set_by = ?", [user_key]
            )
            self.db.execute("DELETE FROM settings WHERE set_by = ?", [user_key])
            # Only closed conversations this user emptied go; an open one may have a message in flight.
            conversations = 0
            for conversation_id in touched:
                conversations += self.db.execute(
                    "DELETE FROM conversations WHERE id = ? AND closed_at IS NOT NULL AND persona IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM messages WHERE conversation_id = ?)",
                    [conversation_id, conversation_id],
                ).rowcount
            # A running cooldown outlives /forget-me (only its timer stays), or forgetting would lift it.
            profile = self.db.execute(
                "DELETE FROM users WHERE id = ? AND (cooldown_until IS NULL OR cooldown_until < ?)", [user_key, time.time()]
            ).rowcount > 0
            self.db.execute("UPDATE users SET name = NULL WHERE id = ?", [user_key])
            self.db.execute("DELETE FROM jobs WHERE user_id = ?", [user_key])
            # Refusals of the last day stay as bare counts (no words, no place), so forgetting cannot
            # be used to wipe strikes and dodge a cooldown; everything else about the user goes.
            self.db.execute(
                "DELETE FROM moderation_events WHERE user_id = ? AND NOT (action = 'block' AND kind != 'output' AND at > ?)",
                [user_key, time.time() - STRIKE_MEMORY_S],
            )
            self.db.execute(
                "UPDATE moderation_events SET excerpt = NULL, target = NULL, conversation = '', reasons = '[]' "
                "WHERE user_id = ?",
                [user_key],
            )
        for key in repersoned:
            self._open.pop(key, None)
        self._known_users.pop(user_key, None)
        return ForgetReport(messages, conversations, profile)

    # --- inspection ----------------------------------------------------------------------

    async def count(self, table: str, where: str = "", params: tuple[Any, ...] = ()) -> int:
        """Row count of a table, optionally filtered (used by /status and tests)."""
        sql = f"SELECT COUNT(*) FROM [{table}]" + (f" WHERE {where}" if where else "")
        return await self._run(lambda: int(self.db.execute(sql, list(params)).fetchone()[0]))

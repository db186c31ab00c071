"""ConversationStore: conversations, turns, users and settings in one SQLite file (WAL), off the event loop."""

from __future__ import annotations

import asyncio
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

T = TypeVar("T")
# How long /forget-me keeps a refusal as a bare count, so cooldowns still add up.
STRIKE_MEMORY_S = 24 * 3600


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


class ConversationStore:
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

    @classmethod
    async def open(cls, path: str | Path) -> ConversationStore:
        """Open (creating and migrating if needed) the store at `path`."""
        store = cls(path)
        await store._run(store._connect)
        return store

    async def close(self) -> None:
        """Close the connection and stop the store's thread."""
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

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

    # --- jobs ----------------------------------------------------------------------------

    async def insert_job(self, row: dict[str, Any]) -> None:
        """Record an accepted job; once this returns it survives a crash."""
        await self._run(lambda: self.db.table("jobs").insert(row))

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Change a job's status, attempts, error or times (a job /forget-me deleted is left deleted)."""
        assignments = ", ".join(f"[{name}] = ?" for name in fields)
        sql = f"UPDATE jobs SET {assignments} WHERE id = ?"
        await self._run(lambda: self.db.execute(sql, [*fields.values(), job_id]))

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """One job's stored row (None once finished rows were forgotten or the id is unknown)."""
        rows = await self._run(lambda: list(self.db.query("SELECT * FROM jobs WHERE id = ?", [job_id])))
        return rows[0] if rows else None

    async def unfinished_jobs(self) -> list[dict[str, Any]]:
        """Jobs that were queued or running when the process stopped, oldest first."""
        return await self._run(
            lambda: list(self.db.query("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at"))
        )

    # --- moderation ----------------------------------------------------------------------

    async def add_moderation_event(self, row: dict[str, Any]) -> None:
        """Record one moderation decision."""
        await self._run(lambda: self.db.table("moderation_events").insert(row))

    async def recent_blocks(self, user_key: str, since: float, min_score: float = 0.0) -> int:
        """How many of a user's requests were confidently refused since a time.

        Refusals of generated text are the model's doing, and a self-harm refusal answers someone who
        may need help: neither counts against the user.
        """
        # Refusals that already earned a cooldown do not count again once it is over.
        sql = (
            "SELECT COUNT(*) FROM moderation_events WHERE user_id = ? AND action = 'block' AND kind != 'output' "
            "AND category != 'self_harm' AND score >= ? "
            "AND at >= MAX(?, COALESCE((SELECT cooldown_until FROM users WHERE id = ?), 0))"
        )
        return await self._run(lambda: int(self.db.execute(sql, [user_key, min_score, since, user_key]).fetchone()[0]))

    async def set_cooldown(self, user_key: str, until: float) -> None:
        """Pause a user's generation until a time."""
        sql = (
            "INSERT INTO users (id, created_at, cooldown_until) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET cooldown_until = excluded.cooldown_until, strikes = strikes + 1"
        )
        await self._run(lambda: self.db.execute(sql, [user_key, time.time(), until]))

    async def active_cooldowns(self) -> dict[str, float]:
        """Users whose cooldown has not ended yet, with its end time."""
        sql = "SELECT id, cooldown_until FROM users WHERE cooldown_until > ?"
        return await self._run(lambda: {row[0]: row[1] for row in self.db.execute(sql, [time.time()])})

    # --- inspection ----------------------------------------------------------------------

    async def count(self, table: str, where: str = "", params: tuple[Any, ...] = ()) -> int:
        """Row count of a table, optionally filtered (used by /status and tests)."""
        sql = f"SELECT COUNT(*) FROM [{table}]" + (f" WHERE {where}" if where else "")
        return await self._run(lambda: int(self.db.execute(sql, list(params)).fetchone()[0]))

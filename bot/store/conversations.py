"""ConversationStore: conversations, turns, users and settings, on SQLite (one process) or PostgreSQL (several)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.messages import ConversationKey, Role
from bot.store.engine import Engine, fetchone, is_postgres_url
from bot.store.records import StoredRecords
from bot.store.sqlite import SqliteEngine

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


class ConversationStore(StoredRecords):
    """The bot's memory over one database engine; every statement runs off the event loop.

    On SQLite this process is the only writer, so open conversations and known users are cached
    in memory; on PostgreSQL other processes write too, so every read goes to the database.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._caching = not engine.shared
        self._open: dict[str, ConversationInfo] = {}
        self._known_users: dict[str, str] = {}

    @classmethod
    async def open(cls, db: str | Path, password: str | None = None) -> ConversationStore:
        """Open the store `bot.db` names (a SQLite path or a postgresql:// URL), creating and migrating it if needed."""
        if is_postgres_url(str(db)):
            from bot.store.postgres import PostgresEngine  # psycopg only where PostgreSQL is used

            return cls(await PostgresEngine.open(str(db), password))
        return cls(await SqliteEngine.open(db))

    async def close(self) -> None:
        """Close the database connections."""
        await self.engine.close()

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL store has none)."""
        if not isinstance(self.engine, SqliteEngine):
            raise AttributeError("a PostgreSQL store has no file")
        return self.engine.path

    @property
    def problem_line(self) -> str | None:
        """The operator's one line about a current fault of the database, if any."""
        problem = self.engine.problem
        return problem.operator.format(path=self.engine.where) if problem else None

    # --- conversations -------------------------------------------------------------------

    async def conversation(self, key: ConversationKey) -> ConversationInfo:
        """The open conversation for `key`, created on first use."""
        cached = self._open.get(str(key))
        if cached is not None:
            return cached
        select = "SELECT id, persona FROM conversations WHERE key = ? AND closed_at IS NULL"
        row = await fetchone(self.engine, select, [str(key)])
        if row is None:
            # Another process may open the same key at the same moment: the unique index picks one row for both.
            row = await fetchone(self.engine,
                "INSERT INTO conversations (key, scope, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) WHERE closed_at IS NULL DO NOTHING RETURNING id, persona",
                [str(key), key.scope, time.time()],
            ) or await fetchone(self.engine, select, [str(key)])  # fmt: skip
            assert row is not None, "an open conversation vanished while it was being opened"
        info = ConversationInfo(int(row[0]), row[1])
        if self._caching:
            self._open[str(key)] = info
        return info

    async def has_conversation(self, key: ConversationKey) -> bool:
        """Whether anyone has talked to the bot under this key before (without creating it)."""
        if str(key) in self._open:
            return True
        return await fetchone(self.engine, "SELECT 1 FROM conversations WHERE key = ? LIMIT 1", [str(key)]) is not None

    async def reset(self, key: ConversationKey) -> ConversationInfo:
        """Close the open conversation for `key` and start a new one (the persona carries over)."""
        old = await self.conversation(key)
        async with self.engine.transaction() as tx:
            await tx.execute("UPDATE conversations SET closed_at = ? WHERE id = ? AND closed_at IS NULL", [time.time(), old.id])
            rows = await tx.fetchall(
                "INSERT INTO conversations (key, scope, persona, persona_set_by, created_at) "
                "SELECT key, scope, persona, persona_set_by, ? FROM conversations WHERE id = ? "
                "ON CONFLICT (key) WHERE closed_at IS NULL DO NOTHING RETURNING id, persona",
                [time.time(), old.id],
            )
        self._open.pop(str(key), None)
        if not rows:  # another process reset it at the same moment: theirs is the new one
            return await self.conversation(key)
        info = ConversationInfo(int(rows[0][0]), rows[0][1])
        if self._caching:
            self._open[str(key)] = info
        return info

    async def set_persona(self, key: ConversationKey, persona: str | None, set_by: str) -> None:
        """Set (or with None, clear) the persona of the open conversation for `key`."""
        info = await self.conversation(key)
        await self.engine.execute(
            "UPDATE conversations SET persona = ?, persona_set_by = ? WHERE id = ?",
            [persona, set_by if persona else None, info.id],
        )
        if self._caching:
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
        insert = (
            "INSERT INTO messages (conversation_id, role, text, author_id, responding_to, platform_message_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
        )
        values = [conversation_id, role, text, author_id, responding_to, platform_message_id, time.time()]
        row = await fetchone(self.engine, insert, values)
        assert row is not None
        if learned_id is not None:  # true once the backend learned it, whether or not this answer is kept
            await self.engine.execute("UPDATE messages SET learned = 1 WHERE id = ?", [learned_id])
        return int(row[0])

    async def mark_learned(self, message_id: int) -> None:
        """Record that a learning backend has learned this user turn."""
        await self.engine.execute("UPDATE messages SET learned = 1 WHERE id = ?", [message_id])

    async def history(self, conversation_id: int, limit: int) -> list[StoredTurn]:
        """The conversation's newest `limit` turns, newest first."""
        rows = await self.engine.fetchall(
            "SELECT role, text, author_id FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?",
            [conversation_id, limit],
        )
        return [StoredTurn(role, text, author) for role, text, author in rows]

    # --- users ---------------------------------------------------------------------------

    async def touch_user(self, user_key: str, name: str) -> None:
        """Record that a user exists (and their display name) the first time they are seen."""
        if self._known_users.get(user_key) == name:
            return
        await self.engine.execute(
            "INSERT INTO users (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            [user_key, name, time.time()],
        )
        if self._caching:
            self._known_users[user_key] = name

    async def learned_texts_by(self, user_key: str) -> list[tuple[str, str]]:
        """(scope, text) of the user's learned turns: exactly what a learning backend must unlearn."""
        return await self._scoped_texts("WHERE m.learned = 1 AND m.author_id = ? ORDER BY m.id", [user_key])

    async def learned_texts(self) -> list[tuple[str, str]]:
        """(scope, text) of every learned turn: what a learning backend re-reads at start-up."""
        return await self._scoped_texts("WHERE m.learned = 1 ORDER BY m.id", [])

    async def _scoped_texts(self, where: str, params: list[Any]) -> list[tuple[str, str]]:
        sql = "SELECT c.scope, m.text FROM messages m JOIN conversations c ON c.id = m.conversation_id " + where
        return [(scope, text) for scope, text in await self.engine.fetchall(sql, params)]

    async def forget_user(self, user_key: str) -> ForgetReport:
        """Delete everything stored about a user: their messages, the bot's answers to them, personas they set, their profile."""
        async with self.engine.transaction() as tx:
            touched = [row[0] for row in await tx.fetchall(
                "SELECT DISTINCT conversation_id FROM messages WHERE author_id = ? OR responding_to = ?", [user_key, user_key]
            )]  # fmt: skip
            messages = await tx.execute("DELETE FROM messages WHERE author_id = ? OR responding_to = ?", [user_key, user_key])
            repersoned = [row[0] for row in await tx.fetchall("SELECT key FROM conversations WHERE persona_set_by = ?", [user_key])]
            await tx.execute("UPDATE conversations SET persona = NULL, persona_set_by = NULL WHERE persona_set_by = ?", [user_key])
            await tx.execute("DELETE FROM settings WHERE set_by = ?", [user_key])
            # Only closed conversations this user emptied go; an open one may have a message in flight.
            conversations = 0
            for conversation_id in touched:
                conversations += await tx.execute(
                    "DELETE FROM conversations WHERE id = ? AND closed_at IS NOT NULL AND persona IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM messages WHERE conversation_id = ?)",
                    [conversation_id, conversation_id],
                )
            # A running cooldown outlives /forget-me (only its timer stays), or forgetting would lift it.
            profile = await tx.execute(
                "DELETE FROM users WHERE id = ? AND (cooldown_until IS NULL OR cooldown_until < ?)", [user_key, time.time()]
            ) > 0
            await tx.execute("UPDATE users SET name = NULL WHERE id = ?", [user_key])
            await tx.execute("DELETE FROM jobs WHERE user_id = ?", [user_key])
            # Refusals of the last day stay as bare counts (no words, no place), so forgetting cannot
            # be used to wipe strikes and dodge a cooldown; everything else about the user goes.
            await tx.execute(
                "DELETE FROM moderation_events WHERE user_id = ? AND NOT (action = 'block' AND kind != 'output' AND at > ?)",
                [user_key, time.time() - STRIKE_MEMORY_S],
            )
            await tx.execute(
                "UPDATE moderation_events SET excerpt = NULL, target = NULL, conversation = '', reasons = '[]' WHERE user_id = ?",
                [user_key],
            )
        for key in repersoned:
            self._open.pop(key, None)
        self._known_users.pop(user_key, None)
        return ForgetReport(messages, conversations, profile)

    # --- inspection ----------------------------------------------------------------------

    async def count(self, table: str, where: str = "", params: tuple[Any, ...] = ()) -> int:
        """Row count of a table, optionally filtered (used by /status and tests)."""
        sql = f'SELECT COUNT(*) FROM "{table}"' + (f" WHERE {where}" if where else "")
        row = await fetchone(self.engine, sql, list(params))
        return int(row[0]) if row else 0

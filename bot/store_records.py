"""The store's job, moderation and platform-event rows: a part of ConversationStore kept in its own module."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")
# Slack retries an unanswered event for about five minutes; an hour covers that with room to spare.
ANSWERED_EVENT_MEMORY_S = 3600.0
# A claimed event still unanswered after this long was lost with its process; its next retry is answered.
STALE_CLAIM_S = 30.0


class StoredRecords:
    """Queries on jobs, moderation_events and answered_events; ConversationStore provides `_run` and `db`."""

    db: sqlite_utils.Database

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

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

    async def newest_job(self, user_key: str, channel: str) -> dict[str, Any] | None:
        """The user's most recent job in this channel (any thread or console session of it), for /reroll without an id."""
        pattern = channel.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"
        sql = "SELECT * FROM jobs WHERE user_id = ? AND conversation LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT 1"
        rows = await self._run(lambda: list(self.db.query(sql, [user_key, pattern])))
        return rows[0] if rows else None

    async def job_ids_of(self, user_key: str) -> list[str]:
        """Every stored job of a user (what /forget-me removes, with its files)."""
        return await self._run(lambda: [row["id"] for row in self.db.query("SELECT id FROM jobs WHERE user_id = ?", [user_key])])

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

    # --- platform events -----------------------------------------------------------------

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """True when this process should answer the event: first seen, or claimed long ago and never answered."""
        now = time.time()

        def claim() -> bool:
            with self.db.conn:
                self.db.execute("DELETE FROM answered_events WHERE at < ?", [now - ANSWERED_EVENT_MEMORY_S])
                row = self.db.execute(
                    "SELECT at, answered FROM answered_events WHERE platform = ? AND event_id = ?", [platform, event_id]
                ).fetchone()
                if row is not None and (row[1] or now - row[0] < STALE_CLAIM_S):
                    return False  # answered, or being answered right now
                # New, or its claimant died before answering: a retry is how Slack gives it another chance.
                self.db.execute("INSERT OR REPLACE INTO answered_events (platform, event_id, at) VALUES (?, ?, ?)",
                                [platform, event_id, now])  # fmt: skip
                return True

        return await self._run(claim)

    async def mark_answered(self, platform: str, event_id: str) -> None:
        """The event has been answered: its retries are dropped from now on."""
        sql = "UPDATE answered_events SET answered = 1 WHERE platform = ? AND event_id = ?"
        await self._run(lambda: self.db.execute(sql, [platform, event_id]))

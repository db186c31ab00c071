"""The store's job, moderation and platform-event rows: a part of ConversationStore kept in its own module."""

from __future__ import annotations

import time
from typing import Any

from bot.store.engine import Engine, fetchone, insert

# Slack retries an unanswered event for about five minutes; an hour covers that with room to spare.
ANSWERED_EVENT_MEMORY_S = 3600.0
# A claimed event still unanswered after this long was lost with its process; its next retry is answered.
STALE_CLAIM_S = 30.0
# Reply chains are remembered this long; a reply to an older answer is walked back through the platform.
REPLY_CHAIN_MEMORY_S = 30 * 24 * 3600.0
# Old chains are cleared at most this often (a write per posted answer need not also delete).
PRUNE_CHAINS_EVERY_S = 3600.0


class StoredRecords:
    """Queries on jobs, moderation_events and answered_events; ConversationStore provides the engine."""

    engine: Engine
    _chains_pruned = 0.0  # when old reply chains were last cleared (time.time())

    # --- jobs ----------------------------------------------------------------------------

    async def insert_job(self, row: dict[str, Any]) -> None:
        """Record an accepted job; once this returns it survives a crash."""
        await insert(self.engine, "jobs", row)

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Change a job's status, attempts, error or times (a job /forget-me deleted is left deleted)."""
        assignments = ", ".join(f'"{name}" = ?' for name in fields)
        await self.engine.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*fields.values(), job_id])

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """One job's stored row (None once finished rows were forgotten or the id is unknown)."""
        rows = await self.engine.fetchdicts("SELECT * FROM jobs WHERE id = ?", [job_id])
        return rows[0] if rows else None

    async def newest_job(self, user_key: str, channel: str) -> dict[str, Any] | None:
        """The user's most recent job in this channel (any thread or console session of it), for /reroll without an id."""
        pattern = channel.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"
        sql = "SELECT * FROM jobs WHERE user_id = ? AND conversation LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT 1"
        rows = await self.engine.fetchdicts(sql, [user_key, pattern])
        return rows[0] if rows else None

    async def job_ids_of(self, user_key: str) -> list[str]:
        """Every stored job of a user (what /forget-me removes, with its files)."""
        return [row[0] for row in await self.engine.fetchall("SELECT id FROM jobs WHERE user_id = ?", [user_key])]

    async def unfinished_jobs(self) -> list[dict[str, Any]]:
        """Jobs that were queued or running when the process stopped, oldest first."""
        return await self.engine.fetchdicts("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at")

    # --- moderation ----------------------------------------------------------------------

    async def add_moderation_event(self, row: dict[str, Any]) -> None:
        """Record one moderation decision."""
        await insert(self.engine, "moderation_events", row)

    async def recent_blocks(self, user_key: str, since: float, min_score: float = 0.0) -> int:
        """How many of a user's requests were confidently refused since a time.

        Refusals of generated text are the model's doing, and a self-harm refusal answers someone who
        may need help: neither counts against the user.
        """
        # Refusals that already earned a cooldown do not count again once it is over.
        sql = (
            "SELECT COUNT(*) FROM moderation_events WHERE user_id = ? AND action = 'block' AND kind != 'output' "
            "AND category != 'self_harm' AND score >= ? AND at >= ? "
            "AND at >= COALESCE((SELECT cooldown_until FROM users WHERE id = ?), 0)"
        )
        row = await fetchone(self.engine, sql, [user_key, min_score, since, user_key])
        return int(row[0]) if row else 0

    async def set_cooldown(self, user_key: str, until: float) -> None:
        """Pause a user's generation until a time."""
        sql = (
            "INSERT INTO users (id, created_at, cooldown_until) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET cooldown_until = excluded.cooldown_until, strikes = users.strikes + 1"
        )
        await self.engine.execute(sql, [user_key, time.time(), until])

    async def cooldown_until(self, user_key: str) -> float | None:
        """When a user's running cooldown ends (None when there is none)."""
        rows = await self.engine.fetchall("SELECT cooldown_until FROM users WHERE id = ? AND cooldown_until > ?", [user_key, time.time()])
        return float(rows[0][0]) if rows else None

    async def active_cooldowns(self) -> dict[str, float]:
        """Users whose cooldown has not ended yet, with its end time."""
        rows = await self.engine.fetchall("SELECT id, cooldown_until FROM users WHERE cooldown_until > ?", [time.time()])
        return {row[0]: row[1] for row in rows}

    # --- platform events -----------------------------------------------------------------

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """True when this process should answer the event: first seen, or claimed long ago and never answered.

        One statement decides, so of several processes receiving the same retry exactly one wins it.
        """
        now = time.time()
        await self.engine.execute("DELETE FROM answered_events WHERE at < ?", [now - ANSWERED_EVENT_MEMORY_S])
        # New, or its claimant died before answering: a retry is how Slack gives it another chance.
        won = await self.engine.fetchall(
            "INSERT INTO answered_events (platform, event_id, at) VALUES (?, ?, ?) "
            "ON CONFLICT (platform, event_id) DO UPDATE SET at = excluded.at "
            "WHERE answered_events.answered = 0 AND answered_events.at < ? RETURNING 1",
            [platform, event_id, now, now - STALE_CLAIM_S],
        )
        return bool(won)

    async def mark_answered(self, platform: str, event_id: str) -> None:
        """The event has been answered: its retries are dropped from now on."""
        sql = "UPDATE answered_events SET answered = 1 WHERE platform = ? AND event_id = ?"
        await self.engine.execute(sql, [platform, event_id])

    # --- reply chains --------------------------------------------------------------------

    async def note_chain(self, platform: str, message_id: str, root: str) -> None:
        """Record that a message belongs to the reply chain starting at `root` (forgetting chains past a month)."""
        now = time.time()
        if now - self._chains_pruned > PRUNE_CHAINS_EVERY_S:
            self._chains_pruned = now
            await self.engine.execute("DELETE FROM reply_chains WHERE at < ?", [now - REPLY_CHAIN_MEMORY_S])
        await self.engine.execute(
            "INSERT INTO reply_chains (platform, message_id, root, at) VALUES (?, ?, ?, ?) ON CONFLICT (platform, message_id) DO NOTHING",
            [platform, message_id, root, time.time()],
        )

    async def chain_of(self, platform: str, message_id: str) -> str | None:
        """The root of the reply chain a message belongs to, if any process recorded it."""
        rows = await self.engine.fetchall("SELECT root FROM reply_chains WHERE platform = ? AND message_id = ?", [platform, message_id])
        return str(rows[0][0]) if rows else None

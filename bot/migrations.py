"""Schema migrations for the store, applied in order and recorded in PRAGMA user_version."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _v1_core_tables(db: sqlite_utils.Database) -> None:
    """Conversations, messages, users and settings."""
    db.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            scope TEXT NOT NULL,
            persona TEXT,
            persona_set_by TEXT,
            created_at REAL NOT NULL,
            closed_at REAL
        )"""
    )
    # One open conversation per key; /reset closes it and opens the next.
    db.execute("CREATE UNIQUE INDEX conversations_open_key ON conversations(key) WHERE closed_at IS NULL")
    db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            role TEXT NOT NULL,
            text TEXT NOT NULL,
            author_id TEXT,
            responding_to TEXT,
            platform_message_id TEXT,
            created_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX messages_conversation ON messages(conversation_id, id)")
    db.execute("CREATE INDEX messages_author ON messages(author_id)")
    db.execute("CREATE INDEX messages_responding_to ON messages(responding_to)")
    db.execute(
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            name TEXT,
            created_at REAL NOT NULL,
            opted_out INTEGER NOT NULL DEFAULT 0,
            strikes INTEGER NOT NULL DEFAULT 0,
            cooldown_until REAL
        )"""
    )
    db.execute(
        """CREATE TABLE settings (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            set_by TEXT,
            PRIMARY KEY (scope, key)
        )"""
    )


def _v2_jobs(db: sqlite_utils.Database) -> None:
    """Generation jobs, so accepted work survives a restart."""
    db.execute(
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            user_id TEXT NOT NULL,
            conversation TEXT NOT NULL,
            message_id TEXT,
            params TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL
        )"""
    )
    db.execute("CREATE INDEX jobs_status ON jobs(status, created_at)")
    db.execute("CREATE INDEX jobs_user ON jobs(user_id)")


def _v3_learned_flag(db: sqlite_utils.Database) -> None:
    """Which user turns a learning backend has learned, so /forget-me unlearns exactly those."""
    db.execute("ALTER TABLE messages ADD COLUMN learned INTEGER NOT NULL DEFAULT 0")


def _v4_moderation_events(db: sqlite_utils.Database) -> None:
    """Every moderation decision, so admins can review refusals and cooldowns can count them."""
    db.execute(
        """CREATE TABLE moderation_events (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            user_id TEXT,
            scope TEXT NOT NULL,
            conversation TEXT NOT NULL,
            kind TEXT NOT NULL,
            action TEXT NOT NULL,
            category TEXT NOT NULL,
            target TEXT,
            score REAL NOT NULL,
            reasons TEXT NOT NULL,
            excerpt TEXT
        )"""
    )
    db.execute("CREATE INDEX moderation_events_user ON moderation_events(user_id, at)")
    db.execute("CREATE INDEX moderation_events_scope ON moderation_events(scope, at)")


def _v5_moderation_stage(db: sqlite_utils.Database) -> None:
    """Which stage of moderation decided (a rule, the act classifier, the guard model), for admins' review."""
    db.execute("ALTER TABLE moderation_events ADD COLUMN stage TEXT NOT NULL DEFAULT ''")


def _v6_delivery_and_answered_events(db: sqlite_utils.Database) -> None:
    """Whether a finished job's outcome reached its user, and platform events already answered (so retries are not)."""
    db.execute("ALTER TABLE jobs ADD COLUMN delivery TEXT")
    db.execute(
        """CREATE TABLE answered_events (
            platform TEXT NOT NULL,
            event_id TEXT NOT NULL,
            at REAL NOT NULL,
            answered INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (platform, event_id)
        )"""
    )
    db.execute("CREATE INDEX answered_events_at ON answered_events(at)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_core_tables,
    _v2_jobs,
    _v3_learned_flag,
    _v4_moderation_events,
    _v5_moderation_stage,
    _v6_delivery_and_answered_events,
]


def migrate(db: sqlite_utils.Database) -> int:
    """Apply every migration newer than the file's user_version; return the resulting version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database is at schema version {version}, newer than this Atelier ({len(MIGRATIONS)}); upgrade Atelier"
        )
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with db.atomic():
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)

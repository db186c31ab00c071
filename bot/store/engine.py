"""What the store's queries need from a database: statements in one portable spelling, and transactions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from bot.store.health import StoreProblem
from bot.store.schema import Dialect

log = logging.getLogger(__name__)

Params = Sequence[Any]


class Session(Protocol):
    """Statements run one after another in one transaction (or, outside one, each on its own).

    SQL is written once, SQLite-style: `?` placeholders, `"double"` quoted names, and only what both
    dialects understand (upserts with ON CONFLICT, RETURNING, partial indexes).
    """

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run a query; every row."""
        ...

    async def fetchdicts(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Run a query; every row as a dict by column name."""
        ...


class Engine(Session, Protocol):
    """A store's database: SQLite on one thread, or a PostgreSQL pool shared with other processes."""

    dialect: Dialect
    # True when other processes write the same database, so nothing read may be cached in memory.
    shared: bool
    # A fault of the database (read-only, disk full, unreachable), shown by /status until it clears.
    problem: StoreProblem | None

    @property
    def where(self) -> str:
        """The database in words for logs and /status (a path, or a server without its password)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Session]:
        """A session whose statements commit together, or not at all."""
        ...

    async def close(self) -> None:
        """Close connections and stop threads."""
        ...


def is_postgres_url(db: str) -> bool:
    """Whether `bot.db` names a PostgreSQL server rather than a SQLite file."""
    return db.startswith(("postgresql://", "postgres://"))


def is_driver_error(error: BaseException) -> bool:
    """Whether an exception comes from the PostgreSQL driver (the database refused or failed), not from our code."""
    return type(error).__module__.startswith("psycopg")


async def fetchone(session: Session, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
    """The first row of a query, or None."""
    rows = await session.fetchall(sql, params)
    return rows[0] if rows else None


async def insert(session: Session, table: str, row: dict[str, Any]) -> None:
    """Insert one row given as a dict."""
    names = ", ".join(f'"{name}"' for name in row)
    marks = ", ".join("?" for _ in row)
    await session.execute(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', list(row.values()))


def announce(engine: Engine, problem: StoreProblem | None, error: BaseException | None = None) -> None:
    """Log a fault once when it starts, and once when it clears."""
    if problem is engine.problem:
        return
    if problem is None:
        log.warning("store recovered: %s is writable again", engine.where)
    else:
        log.error("store problem: %s (%s)", problem.operator.format(path=engine.where), error)
    engine.problem = problem

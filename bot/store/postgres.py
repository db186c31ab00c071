"""The shared store: PostgreSQL through psycopg 3's async pool, so several bot processes can use one database."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from bot.errors import first_line
from bot.store.engine import Params, announce
from bot.store.health import UNREACHABLE, StoreProblem, StoreRefused, StoreUnavailable
from bot.store.schema import Dialect, pending

T = TypeVar("T")
# Any constant works: it only has to be the same in every Atelier process (two starting at once migrate once).
MIGRATION_LOCK = 0x41_54_45_4C  # "ATEL"
# How long a fresh start waits for the server before saying it cannot reach it.
CONNECT_TIMEOUT_S = 10.0
# Connections per process: statements are short, so a few serve hundreds of conversations.
POOL_SIZE = 8


def describe(url: str) -> str:
    """A PostgreSQL URL in words without its password: 'postgresql://user@host:port/db'."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(a URL that does not parse)"
    host = parts.get("host") or "localhost"
    return f"postgresql://{parts.get('user', '')}@{host}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


@functools.lru_cache(maxsize=512)
def spelled(sql: str) -> str:
    """Our portable SQL (`?` placeholders) in psycopg's spelling (`%s`, with a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresEngine:
    """A pool of async connections to one PostgreSQL database that other processes share."""

    dialect: Dialect = "postgresql"
    shared = True

    def __init__(self, url: str, password: str | None = None) -> None:
        self.url = url
        self.problem: StoreProblem | None = None
        kwargs: dict[str, Any] = {"password": password} if password else {}
        # Autocommit is set per connection rather than in kwargs: the job queue opens its own listening
        # connection from these kwargs and names autocommit itself.
        self._pool = psycopg_pool.AsyncConnectionPool(
            url, kwargs=kwargs, min_size=1, max_size=POOL_SIZE, open=False, timeout=CONNECT_TIMEOUT_S,
            name="atelier-store", configure=_autocommit,
        )

    @property
    def where(self) -> str:
        """The server and database, without the password."""
        return describe(self.url)

    @property
    def pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        """The connection pool, which the job queue shares."""
        return self._pool

    @classmethod
    async def open(cls, url: str, password: str | None = None) -> PostgresEngine:
        """Connect and bring the schema up to date (one process at a time migrates)."""
        engine = cls(url, password)
        try:
            await engine._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            async with engine._pool.connection() as conn, conn.transaction():
                await _migrate(conn)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as error:
            await engine.close()
            raise StoreRefused(
                f"cannot reach the PostgreSQL store {engine.where} ({first_line(error)}); check bot.db, that the server is running, "
                "and the password variable (bot.db_password_env)."
            ) from None
        except BaseException:
            await engine.close()
            raise
        return engine

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._pool.close()

    # --- statements ----------------------------------------------------------------------

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement on its own; the rows it changed."""
        return await self._guarded(lambda conn: _Session(conn).execute(sql, params))

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run one query on its own; its rows."""
        return await self._guarded(lambda conn: _Session(conn).fetchall(sql, params))

    async def fetchdicts(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Run one query on its own; its rows as dicts."""
        return await self._guarded(lambda conn: _Session(conn).fetchdicts(sql, params))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Session]:
        """Statements on one connection that commit together."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield _Session(conn)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as error:
            raise self._unreachable(error) from None
        self._reached()

    async def _guarded(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        try:
            async with self._pool.connection() as conn:
                result = await work(conn)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as error:
            raise self._unreachable(error) from None
        self._reached()
        return result

    def _unreachable(self, error: Exception) -> StoreUnavailable:
        announce(self, UNREACHABLE, error)
        return StoreUnavailable(UNREACHABLE.user)

    def _reached(self) -> None:
        if self.problem is not None:
            announce(self, None)


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    """A statement on its own commits at once; transactions say so themselves."""
    await conn.set_autocommit(True)


class _Session:
    """Statements on one pooled connection."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; the rows it changed."""
        cursor = await self._conn.execute(spelled(sql), list(params))
        return cursor.rowcount

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run a query; its rows."""
        cursor = await self._conn.execute(spelled(sql), list(params))
        return [tuple(row) for row in await cursor.fetchall()]

    async def fetchdicts(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Run a query; its rows as dicts."""
        cursor = await self._conn.execute(spelled(sql), list(params))
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


async def _migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    """Bring the schema to this code's version inside the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
    await conn.execute("CREATE TABLE IF NOT EXISTS atelier_schema (version INTEGER NOT NULL)")
    cursor = await conn.execute("SELECT version FROM atelier_schema")
    row = await cursor.fetchone()
    if row is None:
        await conn.execute("INSERT INTO atelier_schema (version) VALUES (0)")
    version = row[0] if row else 0
    for number, migration in pending(version):
        for statement in migration.sql("postgresql"):
            await conn.execute(statement)
        if migration.job_queue:
            from procrastinate.schema import SchemaManager

            await conn.execute(SchemaManager.get_schema())
        await conn.execute("UPDATE atelier_schema SET version = %s", [number])

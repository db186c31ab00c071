"""The embedded store: one SQLite file (WAL) owned by one process, every statement on one dedicated thread."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from bot.store.engine import Params, announce
from bot.store.health import StoreLock, StoreProblem, StoreUnavailable, check_existing, classify
from bot.store.schema import Dialect, pending

T = TypeVar("T")
# How often a read-only store is reopened to see whether it became writable.
REOPEN_INTERVAL_S = 5.0
# A fault counts as cleared after writes succeed with no new fault for this long.
RECOVERY_QUIET_S = 30.0


class SqliteEngine:
    """One SQLite file; one thread owns the connection, so the event loop never waits on disk.

    Statements of different coroutines never mix: a transaction holds the engine's lock until it ends,
    and a statement on its own waits for it (or, with none open, goes straight to the thread's queue).
    WAL with synchronous=NORMAL keeps every committed row across a kill -9.
    """

    dialect: Dialect = "sqlite"
    shared = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-sqlite")
        self._lock = asyncio.Lock()
        self._file_lock = StoreLock(self.path) if str(path) != ":memory:" else None
        self._db: sqlite_utils.Database | None = None
        self.problem: StoreProblem | None = None
        self._reopen_after = 0.0
        self._last_fault = 0.0

    @property
    def where(self) -> str:
        """The file's path."""
        return str(self.path)

    @classmethod
    async def open(cls, path: str | Path) -> SqliteEngine:
        """Open (creating and migrating if needed) the file at `path`."""
        engine = cls(path)
        try:
            await engine._call(engine._open_file)
        except BaseException:
            await engine.close()
            raise
        return engine

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
        if self._file_lock is not None:
            self._file_lock.release()

    @property
    def db(self) -> sqlite_utils.Database:
        """The underlying database; only for use on the engine's thread."""
        assert self._db is not None, "store is closed"
        return self._db

    # --- statements ----------------------------------------------------------------------

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement on its own; the rows it changed."""
        return await self._alone(lambda: self.db.execute(sql, list(params)).rowcount)

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run one query on its own; its rows."""
        return await self._alone(lambda: [tuple(row) for row in self.db.execute(sql, list(params)).fetchall()])

    async def fetchdicts(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Run one query on its own; its rows as dicts."""
        return await self._alone(self._dicts, sql, params)

    async def _alone(self, fn: Callable[..., T], *args: Any) -> T:
        """One statement outside any transaction.

        With no transaction open it goes straight to the thread's queue, behind whatever is there (so a
        transaction that begins later also begins after it); while one is open it waits for it to end.
        """
        if not self._lock.locked():
            return await self._call(fn, *args)
        async with self._lock:
            return await self._call(fn, *args)

    def _dicts(self, sql: str, params: Params) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, list(params))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        """Statements that commit together; other coroutines' statements wait until it ends."""
        async with self._lock:
            try:
                # Shielded: a caller cancelled while BEGIN runs on the thread must still roll it back below.
                await asyncio.shield(self._call(lambda: self.db.execute("BEGIN IMMEDIATE")))
                yield _Transaction(self)
                await asyncio.shield(self._call(lambda: self.db.execute("COMMIT")))
            except BaseException:
                # A failed COMMIT (disk full, I/O error) leaves the transaction open: close it, or every later write joins it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._call(self._rollback))
                raise

    def _rollback(self) -> None:
        if self._db is not None and self._db.conn.in_transaction:
            self._db.execute("ROLLBACK")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the engine's thread with nothing else in between (backup, tests, PRAGMAs)."""
        return await self._alone(fn, *args)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._guarded, fn, args)

    # --- faults --------------------------------------------------------------------------

    def _guarded(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Run `fn` on the thread, turning a fault of the file or disk into one plain sentence."""
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
            announce(self, None)
        return result

    def _fault(self, error: sqlite3.Error) -> None:
        """Name a fault of the file or disk (logged once until it clears); anything else is re-raised as it is."""
        problem = classify(error)
        if problem is None:
            raise error
        self._last_fault = time.monotonic()
        announce(self, problem, error)

    # --- opening -------------------------------------------------------------------------

    def _open_file(self) -> None:
        if self._file_lock is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file_lock.acquire()
            check_existing(self.path)
        self._connect()

    def _connect(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: a statement on its own commits at once; transactions say BEGIN themselves.
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10, isolation_level=None)
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
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
                announce(self, None)


class _Transaction:
    """The statements of one SQLite transaction, run on the engine's thread while it holds the lock."""

    def __init__(self, engine: SqliteEngine) -> None:
        self._engine = engine

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; the rows it changed."""
        return await self._engine._call(lambda: self._engine.db.execute(sql, list(params)).rowcount)

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run a query; its rows."""
        return await self._engine._call(lambda: [tuple(row) for row in self._engine.db.execute(sql, list(params)).fetchall()])

    async def fetchdicts(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Run a query; its rows as dicts."""
        return await self._engine._call(self._engine._dicts, sql, params)


def _migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the file's user_version, each in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, migration in pending(version):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.sql("sqlite"):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return version

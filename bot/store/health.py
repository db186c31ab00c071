"""The store's safety: one owning process, a check at start, plain names for disk faults, backup and restore."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bot.errors import BotError
from bot.store.schema import MIGRATIONS

RESTORE_HINT = "restore a backup with `python -m bot restore BACKUP_FILE`, or move the file away to start an empty store"


class StoreRefused(RuntimeError):
    """The store cannot be opened as it is (in use, damaged, emptied, newer); the message says what to do."""


class StoreUnavailable(BotError):
    """The store cannot be written right now; the message names the condition (read-only, disk full, damaged)."""


@dataclass(frozen=True, slots=True)
class StoreProblem:
    """A fault of the store's file or disk: how to spot it in SQLite's message, and what to say about it."""

    name: str
    markers: tuple[str, ...]
    user: str
    operator: str


# What SQLite says → what the user and the operator are told. Order matters: the first match wins.
PROBLEMS = (
    StoreProblem("read_only", ("readonly", "read-only"),
                 "I can't save anything right now: the bot's store is read-only. An admin has been told; please try again later.",
                 "the store {path} is read-only; make it writable (chmod/chown, or remount the disk read-write); the bot "
                 "recovers by itself"),
    StoreProblem("disk_full", ("database or disk is full", "disk is full"),
                 "I can't save anything right now: the bot's disk is full. An admin has been told; please try again later.",
                 "the disk holding {path} is full; free some space; the bot recovers by itself"),
    StoreProblem("disk_error", ("disk i/o error",),
                 "I can't save anything right now: the bot's disk refused a write. An admin has been told; please try again later.",
                 "the disk refused a write to {path} (full, over a file-size limit, or failing); check `df` and the "
                 "system log; the bot recovers by itself"),
    StoreProblem("damaged", ("malformed", "not a database", "corrupt"),
                 "I can't use the bot's store right now: it is damaged. An admin has been told.",
                 "the store {path} is damaged; stop the bot and " + RESTORE_HINT),
)  # fmt: skip


# A PostgreSQL store that cannot be reached (server down, network, pool exhausted) clears by itself too.
UNREACHABLE = StoreProblem(
    "unreachable", (),
    "I can't save anything right now: the bot's database is unreachable. An admin has been told; please try again later.",
    "the PostgreSQL store {path} is unreachable; check the server and the network; the bot recovers by itself",
)


def classify(error: sqlite3.Error) -> StoreProblem | None:
    """The file or disk fault behind an SQLite error, or None for anything else (a bug, a constraint)."""
    text = str(error).lower()
    return next((problem for problem in PROBLEMS if any(marker in text for marker in problem.markers)), None)


class StoreLock:
    """An exclusive lock beside a SQLite store (`<db>.lock`, holding the owner's pid); the OS drops it if the owner dies."""

    def __init__(self, db_path: Path) -> None:
        self.path = Path(f"{db_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreRefused naming the process that holds it."""
        if self.path.with_suffix("").is_dir():
            raise StoreRefused(f"cannot open the store {self.path.with_suffix('')}: it is a folder; name a file in it, e.g. atelier.db.")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreRefused(
                f"the store {self.path.with_suffix('')} is in use by another Atelier process (pid {holder}); one process "
                "owns a SQLite store: stop the other one first, or give this one its own store with --db."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its content is only informative)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def check_existing(path: Path) -> None:
    """Refuse a store file that exists but is emptied or damaged, before anything writes to it."""
    if not path.exists():
        return
    if path.stat().st_size == 0:
        raise StoreRefused(f"the store {path} is an empty file (0 bytes), so its data is gone; {RESTORE_HINT}.")
    verdict = quick_check(path)
    if verdict != "ok":
        raise StoreRefused(f"the store {path} is damaged ({verdict}); {RESTORE_HINT}.")


def quick_check(path: Path) -> str:
    """'ok', or what is wrong with the SQLite file at `path` (not a database, failed quick_check, too new)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [row[0] for row in conn.execute("PRAGMA quick_check")]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        return str(error)
    if rows != ["ok"]:
        problems = [line.strip() for row in rows for line in str(row).splitlines() if line.strip() and not line.startswith("***")]
        first = problems[0][:120] if problems else "failed"
        return f"quick_check: {first}" + (f", and {len(problems) - 1} more problems" if len(problems) > 1 else "")
    if version > len(MIGRATIONS):
        return f"schema version {version} is newer than this Atelier ({len(MIGRATIONS)}); upgrade Atelier"
    if version == 0 and tables:
        return "it holds tables but no Atelier schema version; is it another program's database?"
    return "ok"


def backup(source: Path, target: Path) -> int:
    """Copy a live store with SQLite's online backup API (safe while the bot runs); returns the pages copied."""
    if not source.exists():
        raise StoreRefused(f"there is no store at {source}; check bot.db or --db.")
    if target.exists():
        raise StoreRefused(f"{target} already exists; name a new file for the backup.")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as live, sqlite3.connect(target) as copy:
        live.backup(copy)
        pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
    copy.close()
    live.close()
    return pages


def restore(backup_file: Path, store: Path) -> Path | None:
    """Replace the store with a checked backup (the bot must be stopped); returns where the old store was kept."""
    verdict = quick_check(backup_file) if backup_file.exists() and backup_file.stat().st_size else "missing or empty"
    if verdict != "ok":
        raise StoreRefused(f"the backup {backup_file} cannot be restored ({verdict}); choose another backup file.")
    lock = StoreLock(store)
    lock.acquire()  # refuses while a bot owns the store
    try:
        kept = None
        if store.exists():
            kept = store.with_name(store.name + ".before-restore")
            os.replace(store, kept)
            for suffix in ("-wal", "-shm"):  # the old journal goes with its store, never into the restored one
                if Path(f"{store}{suffix}").exists():
                    os.replace(f"{store}{suffix}", f"{kept}{suffix}")
        with sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True) as source, sqlite3.connect(store) as target:
            source.backup(target)
        target.close()
        source.close()
        return kept
    finally:
        lock.release()

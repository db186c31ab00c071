"""`python -m bot migrate --to URL`: copy a whole store into an empty one (SQLite → PostgreSQL) and verify it."""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.conversations import ConversationStore
from bot.store.engine import Session, insert
from bot.store.schema import NUMBERED_TABLES, TABLES

# Rows read from the source at a time: a big store is never held in memory whole.
BATCH = 1000
# Each table's rows in a stable order, so batches neither skip nor repeat a row.
ORDER = {"users": "id", "settings": "scope, key", "conversations": "id", "messages": "id", "jobs": "id",
         "moderation_events": "id", "answered_events": "platform, event_id",
         "reply_chains": "platform, message_id"}  # fmt: skip


class CopyRefused(RuntimeError):
    """The copy cannot start or did not verify; the message says what to do."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    """How many rows of each table were copied (and found again in the target)."""

    counts: dict[str, int]

    def summary(self) -> str:
        """'12 conversations, 340 messages, …' in table order."""
        return ", ".join(f"{count} {table.replace('_', ' ')}" for table, count in self.counts.items())


async def copy_store(source: ConversationStore, target: ConversationStore) -> CopyReport:
    """Copy every row of every table into an empty target in one transaction, then compare the counts."""
    for table in TABLES:
        if await target.count(table):
            raise CopyRefused(f"{target.engine.where} already holds {table}; migrate into an empty database "
                              "(create a new one, or drop this one's tables).")  # fmt: skip
    async with target.engine.transaction() as tx:
        for table in TABLES:
            await _copy_table(source, tx, table)
        if target.engine.dialect == "postgresql":
            # Ids were copied as they were, so the next id handed out must come after them.
            for table in NUMBERED_TABLES:
                await tx.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
                )
    counts = {table: await source.count(table) for table in TABLES}
    copied = {table: await target.count(table) for table in TABLES}
    if copied != counts:
        differing = ", ".join(f"{table} {copied[table]} of {counts[table]}" for table in TABLES if copied[table] != counts[table])
        raise CopyRefused(f"the copy does not match its source ({differing}); drop the target's tables and run migrate again.")
    return CopyReport(counts)


async def _copy_table(source: ConversationStore, tx: Session, table: str) -> None:
    offset = 0
    while True:
        rows = await source.engine.fetchdicts(f'SELECT * FROM "{table}" ORDER BY {ORDER[table]} LIMIT ? OFFSET ?', [BATCH, offset])
        for row in rows:
            await insert(tx, table, row)
        if len(rows) < BATCH:
            return
        offset += BATCH


"""Manual entries in PostgreSQL: the `ManualEntrySource` the manual provider reads.

A ledger (a manual link's item id) belongs to one account (`owner_ref`, the
`pair_key(space_id, account_id)` the link flow names the person by) and holds
its accounts and an append-only log of changes numbered from 1: the manual
adapter's cursor is a position in it, so a sync after a restart goes on where
the last one stopped. Writes come from `record` (the HTTP route of
`infra/http/manual.py`); an entry sent again unchanged records nothing, so a
retried request is harmless.

A ledger is bounded (`LedgerLimits`): so many accounts, so many live entries,
so many changes in its log (edits and deletions count: the log is what a sync
reads, and it is never compacted). A write that would pass one is refused
whole with `LedgerFullError`, nothing of it applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import asyncpg
import msgspec

from services.providers.manual.store import (
    ManualAccount,
    ManualChange,
    ManualEntry,
    UnknownLedgerError,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_manual_ledgers (
    ledger_id text PRIMARY KEY,
    owner_ref text NOT NULL,
    head bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS syncyard_manual_accounts (
    ledger_id text NOT NULL REFERENCES syncyard_manual_ledgers ON DELETE CASCADE,
    account_id text NOT NULL,
    account jsonb NOT NULL,
    PRIMARY KEY (ledger_id, account_id)
);
CREATE TABLE IF NOT EXISTS syncyard_manual_changes (
    ledger_id text NOT NULL REFERENCES syncyard_manual_ledgers ON DELETE CASCADE,
    position bigint NOT NULL,
    kind text NOT NULL,
    entry_id text NOT NULL,
    entry jsonb NOT NULL,
    PRIMARY KEY (ledger_id, position)
);
CREATE INDEX IF NOT EXISTS syncyard_manual_changes_by_entry
    ON syncyard_manual_changes (ledger_id, entry_id, position DESC);
"""
_SETUP_LOCK = 0x5_3A_0A1  # an advisory lock of its own: replicas create the tables once

_LATEST = """
SELECT DISTINCT ON (entry_id) entry_id, kind, entry FROM syncyard_manual_changes
WHERE ledger_id = $1 AND entry_id = ANY($2::text[])
ORDER BY entry_id, position DESC
"""


# The ledger's live entries: those whose last change is not a removal.
_LIVE = """
SELECT count(*) FROM (
    SELECT DISTINCT ON (entry_id) kind FROM syncyard_manual_changes
    WHERE ledger_id = $1 ORDER BY entry_id, position DESC
) AS latest WHERE kind <> 'removed'
"""


class LedgerOwnedElsewhereError(LookupError):
    """The ledger exists but belongs to another account: told apart from none at all
    only in logs, never to the caller."""


class LedgerLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How much one ledger may hold: a person's hand-kept ledger, not a bank's export."""

    accounts: int = 100
    # Entries live at once (added and not removed).
    entries: int = 10_000
    # Changes in its log, ever: each add, edit and removal is one. A ledger that
    # reaches it takes no more writes; a new ledger (a new manual link) does.
    changes: int = 100_000


class LedgerFullError(ValueError):
    """A write that would take a ledger past one of its `LedgerLimits`; nothing of it applied."""

    def __init__(self, ledger_id: str, what: str, would_hold: int, limit: int) -> None:
        self.ledger_id, self.what, self.would_hold, self.limit = ledger_id, what, would_hold, limit
        super().__init__(
            f"ledger {ledger_id!r} would hold {would_hold} {what}, over its limit of {limit}: "
            "nothing of this write was recorded"
        )


class ManualEntriesRecorded(msgspec.Struct, frozen=True, kw_only=True):
    """What one write did: the ledger's head after it, and how many changes it added."""

    ledger_id: str
    head: int
    changes: int


_Kind = Literal["added", "modified", "removed"]
# A pool's connection or a bare one: both take the same queries.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class PostgresManualEntries:
    """A `ManualEntrySource` in three small tables, and the writes a person's app makes."""

    def __init__(self, pool: asyncpg.Pool, limits: LedgerLimits | None = None) -> None:
        self.pool = pool
        self.limits = limits or LedgerLimits()

    async def setup(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
            await conn.execute(SCHEMA)

    async def open(self, ledger_id: str, owner_ref: str) -> None:
        await self.pool.execute(
            "INSERT INTO syncyard_manual_ledgers (ledger_id, owner_ref) VALUES ($1, $2) "
            "ON CONFLICT (ledger_id) DO NOTHING",
            ledger_id,
            owner_ref,
        )

    async def exists(self, ledger_id: str) -> bool:
        found = await self.pool.fetchval(
            "SELECT 1 FROM syncyard_manual_ledgers WHERE ledger_id = $1", ledger_id
        )
        return found is not None

    async def close(self, ledger_id: str) -> None:
        await self.pool.execute(
            "DELETE FROM syncyard_manual_ledgers WHERE ledger_id = $1", ledger_id
        )

    async def accounts(self, ledger_id: str) -> list[ManualAccount]:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            await self._head(conn, ledger_id)
            rows = await conn.fetch(
                "SELECT account FROM syncyard_manual_accounts WHERE ledger_id = $1 "
                "ORDER BY account_id",
                ledger_id,
            )
        return [msgspec.json.decode(r["account"], type=ManualAccount) for r in rows]

    async def changes(
        self, ledger_id: str, after: int, limit: int
    ) -> tuple[list[ManualChange], int]:
        # One snapshot: the head and the page agree even while a write lands.
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            head = await self._head(conn, ledger_id)
            rows = await conn.fetch(
                "SELECT position, kind, entry FROM syncyard_manual_changes "
                "WHERE ledger_id = $1 AND position > $2 ORDER BY position LIMIT $3",
                ledger_id,
                after,
                limit,
            )
        return [
            ManualChange(
                position=r["position"],
                kind=r["kind"],
                entry=msgspec.json.decode(r["entry"], type=ManualEntry),
            )
            for r in rows
        ], head

    async def record(
        self,
        ledger_id: str,
        owner_ref: str,
        *,
        accounts: Sequence[ManualAccount] = (),
        entries: Sequence[ManualEntry] = (),
        deleted: Sequence[str] = (),
    ) -> ManualEntriesRecorded:
        """Open the ledger for `owner_ref` if it is new, then apply one write in one transaction.

        Accounts are upserted; an entry is `added` (new, or back after a removal),
        `modified` (changed) or nothing (sent again unchanged); a deleted id that is
        live is `removed`. Raises LedgerOwnedElsewhereError for another account's ledger,
        and LedgerFullError for a write that would pass one of `limits` (the
        transaction rolls back: nothing of it is applied).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO syncyard_manual_ledgers (ledger_id, owner_ref) VALUES ($1, $2) "
                "ON CONFLICT (ledger_id) DO NOTHING",
                ledger_id,
                owner_ref,
            )
            # Locked: two writes to one ledger number their changes one after the other.
            row = await conn.fetchrow(
                "SELECT owner_ref, head FROM syncyard_manual_ledgers WHERE ledger_id = $1 "
                "FOR UPDATE",
                ledger_id,
            )
            assert row is not None
            if row["owner_ref"] != owner_ref:
                raise LedgerOwnedElsewhereError(ledger_id)
            for account in accounts:
                await conn.execute(
                    "INSERT INTO syncyard_manual_accounts VALUES ($1, $2, $3) "
                    "ON CONFLICT (ledger_id, account_id) DO UPDATE SET account = EXCLUDED.account",
                    ledger_id,
                    account.account_id,
                    msgspec.json.encode(account).decode(),
                )
            if accounts:
                held = await conn.fetchval(
                    "SELECT count(*) FROM syncyard_manual_accounts WHERE ledger_id = $1",
                    ledger_id,
                )
                if held > self.limits.accounts:
                    raise LedgerFullError(ledger_id, "accounts", held, self.limits.accounts)
            planned = await self._plan(conn, ledger_id, entries, deleted)
            head = int(row["head"])
            await self._check_room(conn, ledger_id, head, planned)
            if planned:
                await conn.executemany(
                    "INSERT INTO syncyard_manual_changes VALUES ($1, $2, $3, $4, $5)",
                    [
                        (ledger_id, head + n, kind, e.entry_id, msgspec.json.encode(e).decode())
                        for n, (kind, e) in enumerate(planned, 1)
                    ],
                )
                head += len(planned)
                await conn.execute(
                    "UPDATE syncyard_manual_ledgers SET head = $2 WHERE ledger_id = $1",
                    ledger_id,
                    head,
                )
        return ManualEntriesRecorded(ledger_id=ledger_id, head=head, changes=len(planned))

    async def _plan(
        self,
        conn: Conn,
        ledger_id: str,
        entries: Sequence[ManualEntry],
        deleted: Sequence[str],
    ) -> list[tuple[_Kind, ManualEntry]]:
        ids = [e.entry_id for e in entries] + list(deleted)
        latest: dict[str, tuple[str, ManualEntry | None]] = {
            r["entry_id"]: (r["kind"], msgspec.json.decode(r["entry"], type=ManualEntry))
            for r in await conn.fetch(_LATEST, ledger_id, ids)
        }
        planned: list[tuple[_Kind, ManualEntry]] = []
        for entry in entries:
            kind, before = latest.get(entry.entry_id, ("removed", None))
            if kind != "removed" and before == entry:
                continue
            change: _Kind = "added" if kind == "removed" else "modified"
            planned.append((change, entry))
            latest[entry.entry_id] = (change, entry)
        for entry_id in deleted:
            kind, before = latest.get(entry_id, ("removed", None))
            if kind != "removed" and before is not None:
                planned.append(("removed", before))
                latest[entry_id] = ("removed", before)
        return planned

    async def _check_room(
        self, conn: Conn, ledger_id: str, head: int, planned: list[tuple[_Kind, ManualEntry]]
    ) -> None:
        """Refuse `planned` if the ledger would then pass a limit (under the ledger's lock)."""
        if not planned:
            return
        if head + len(planned) > self.limits.changes:
            raise LedgerFullError(ledger_id, "changes", head + len(planned), self.limits.changes)
        added = sum(kind == "added" for kind, _ in planned)
        removed = sum(kind == "removed" for kind, _ in planned)
        if added <= removed:
            return  # no more live entries than before: never refused for being full
        if head + added <= self.limits.entries:
            return  # fewer changes so far than the cap allows live entries: no count needed
        # A scan of the ledger's changes, under its lock: only for ledgers that large.
        live = await conn.fetchval(_LIVE, ledger_id)
        if live + added - removed > self.limits.entries:
            raise LedgerFullError(ledger_id, "entries", live + added - removed, self.limits.entries)

    @staticmethod
    async def _head(conn: Conn, ledger_id: str) -> int:
        head = await conn.fetchval(
            "SELECT head FROM syncyard_manual_ledgers WHERE ledger_id = $1", ledger_id
        )
        if head is None:
            raise UnknownLedgerError(ledger_id)
        return int(head)

"""The transaction ledger: which provider transaction is which purchase, per connection.

Kept in PostgreSQL (asyncpg) beside the event store: an id, once given, stays.
Rows are written before the sync's events commit; a redelivered sync finds
its rows and assigns the same ids, so the ledger needs no transaction with
the event store.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from services.reconciliation.matcher import Seen, Tolerance, as_seen, assign

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_ledger (
    connection_id uuid NOT NULL,
    provider text NOT NULL,
    provider_txn_id text NOT NULL,
    syncyard_id uuid NOT NULL,
    amount_cents bigint NOT NULL,
    posted date NOT NULL,
    description text NOT NULL,
    PRIMARY KEY (connection_id, provider, provider_txn_id)
);
CREATE INDEX IF NOT EXISTS syncyard_ledger_by_day ON syncyard_ledger (connection_id, posted);
"""

_KNOWN = """
SELECT provider, provider_txn_id, syncyard_id, amount_cents, posted, description
FROM syncyard_ledger
WHERE connection_id = $1
  AND ((provider = $2 AND provider_txn_id = ANY($3)) OR posted BETWEEN $4 AND $5)
"""


_INSERT = """
INSERT INTO syncyard_ledger
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::bigint[],
                     $6::date[], $7::text[])
ON CONFLICT DO NOTHING
"""

_Row = tuple[UUID, str, str, UUID, int, date, str]


class TransactionLedger:
    def __init__(self, pool: asyncpg.Pool, tolerance: Tolerance | None = None) -> None:
        self.pool = pool
        self.tolerance = tolerance or Tolerance()
        # Rows from concurrent syncs wait here while a write is in flight, then go
        # together in one statement: a round trip per sync capped the worker.
        self._queued: list[tuple[list[_Row], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def _write(self, rows: list[_Row]) -> None:
        if not rows:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((rows, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        await done

    async def _write_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            rows = [row for rows, _ in batch for row in rows]
            columns = [list(column) for column in zip(*rows, strict=True)]
            try:
                await self.pool.execute(_INSERT, *columns)
            except Exception as exc:  # every waiting sync fails, and is redelivered
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def setup(self) -> None:
        with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
            await self.pool.execute(SCHEMA)

    async def reconcile(
        self, connection_id: UUID, provider: str, page: dict[str, Any], *, multi_homed: bool = True
    ) -> tuple[dict[str, Any], int]:
        """The page with a `syncyard_transaction_id` on every transaction, and
        purchases upstream already has (through another provider) moved from
        `added` to `reconciled`. Returns the page and how many were moved."""
        added: list[dict[str, Any]] = page.get("added", [])
        modified: list[dict[str, Any]] = page.get("modified", [])
        removed: list[str] = page.get("removed", [])
        incoming = [*added, *modified]
        if not incoming and not removed:
            return page, 0
        seen = [as_seen(provider, t) for t in incoming]
        window = timedelta(days=self.tolerance.days)
        first = min((s.posted for s in seen), default=None)
        last = max((s.posted for s in seen), default=None)
        # With one link there is no other provider to match against, and ids are
        # deterministic: the rows are kept for when a second link arrives.
        rows = (
            await self.pool.fetch(
                _KNOWN,
                connection_id,
                provider,
                [s.provider_id for s in seen] + [str(r) for r in removed],
                (first - window) if first else None,
                (last + window) if last else None,
            )
            if multi_homed
            else []
        )
        known = [
            Seen(
                syncyard_id=str(r["syncyard_id"]),
                provider=r["provider"],
                provider_id=r["provider_txn_id"],
                amount_cents=r["amount_cents"],
                posted=r["posted"],
                description=r["description"],
            )
            for r in rows
        ]
        ids, new_rows, already_sent = assign(
            str(connection_id), provider, incoming, known, self.tolerance
        )
        await self._write(
            [
                (
                    connection_id,
                    r.provider,
                    r.provider_id,
                    UUID(r.syncyard_id),
                    r.amount_cents,
                    r.posted,
                    r.description,
                )
                for r in new_rows
            ]
        )
        mine = {s.provider_id: s.syncyard_id for s in known if s.provider == provider}

        def tagged(txn: dict[str, Any]) -> dict[str, Any]:
            return {**txn, "syncyard_transaction_id": ids[str(txn["transaction_id"])]}

        result = {
            **page,
            "added": [tagged(t) for t in added if str(t["transaction_id"]) not in already_sent],
            "modified": [tagged(t) for t in modified],
            "reconciled": [tagged(t) for t in added if str(t["transaction_id"]) in already_sent],
            "removed_syncyard_ids": [mine[str(r)] for r in removed if str(r) in mine],
        }
        return result, len(already_sent)

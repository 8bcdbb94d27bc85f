"""The feed index: which provider transaction is which syncyard transaction, per account.

A table derived from the connection's `FeedAppended` events alone, kept by the
sync handler itself so reconciliation reads it without waiting for a
projector: after a sync commits, its events are indexed; before a sync plans,
the index catches up with any feed event it has not indexed (one a crash cut
off before it was indexed). `syncyard_feed_index_version` holds, per
connection, the stream version the index has applied, so applying is
idempotent and nothing is indexed that was not committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date
from typing import NamedTuple
from uuid import UUID

import asyncpg

from events.base import DomainEvent
from events.feed import FeedAppended, FeedTransaction
from services.ports import EventStorePort, FeedIndexPort
from services.reconciliation.feed import Known, fingerprint
from services.reconciliation.matcher import cents, normalise
from services.resilience.keyed_lock import KeyedLocks

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_feed_index (
    connection_id uuid NOT NULL,
    provider text NOT NULL,
    provider_txn_id text NOT NULL,
    syncyard_id text NOT NULL,
    amount_cents bigint NOT NULL,
    posted date NOT NULL,
    authorized date,
    description text NOT NULL,
    pending boolean NOT NULL,
    fingerprint text NOT NULL,
    gone boolean NOT NULL DEFAULT false,
    withdrawn boolean NOT NULL DEFAULT false,
    position bigint NOT NULL,
    PRIMARY KEY (connection_id, provider, provider_txn_id)
);
CREATE INDEX IF NOT EXISTS syncyard_feed_index_by_day
    ON syncyard_feed_index (connection_id, posted);
CREATE TABLE IF NOT EXISTS syncyard_feed_index_version (
    connection_id uuid PRIMARY KEY,
    version bigint NOT NULL
);
"""
_SETUP_LOCK = 0x5_FEED_1

_KNOWN = """
SELECT provider, provider_txn_id, syncyard_id, amount_cents, posted, authorized, description,
       pending, fingerprint, gone, withdrawn, position
FROM syncyard_feed_index
WHERE connection_id = $1
  AND ((provider = $2 AND provider_txn_id = ANY($3::text[]))
       OR posted BETWEEN $4 AND $5 OR authorized BETWEEN $4 AND $5)
"""
_UPSERT = """
INSERT INTO syncyard_feed_index AS i (connection_id, provider, provider_txn_id, syncyard_id,
    amount_cents, posted, authorized, description, pending, fingerprint, position)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::date[],
                         $7::date[], $8::text[], $9::boolean[], $10::text[], $11::bigint[])
ON CONFLICT (connection_id, provider, provider_txn_id) DO UPDATE SET
    syncyard_id = EXCLUDED.syncyard_id, amount_cents = EXCLUDED.amount_cents,
    posted = EXCLUDED.posted, authorized = EXCLUDED.authorized,
    description = EXCLUDED.description,
    pending = EXCLUDED.pending, fingerprint = EXCLUDED.fingerprint,
    position = LEAST(i.position, EXCLUDED.position)
"""
_WITHDRAW = """
UPDATE syncyard_feed_index SET withdrawn = true,
    gone = gone OR (provider = $2 AND provider_txn_id = ANY($4::text[]))
WHERE connection_id = $1 AND syncyard_id = ANY($3::text[])
"""
_ADVANCE = """
INSERT INTO syncyard_feed_index_version VALUES ($1, $2)
ON CONFLICT (connection_id) DO UPDATE SET version = EXCLUDED.version
WHERE syncyard_feed_index_version.version < EXCLUDED.version
"""
_ROW_TYPES = ("uuid", "text", "text", "text", "bigint", "date", "date", "text", "boolean", "text")


def _upsert_rows(first: int) -> str:
    """A CTE upserting the index rows given as 11 arrays from parameter `first` on."""
    arrays = ", ".join(f"${first + n}::{kind}[]" for n, kind in enumerate((*_ROW_TYPES, "bigint")))
    return f"""upserted AS (
INSERT INTO syncyard_feed_index AS i (connection_id, provider, provider_txn_id, syncyard_id,
    amount_cents, posted, authorized, description, pending, fingerprint, position)
SELECT * FROM unnest({arrays})
ON CONFLICT (connection_id, provider, provider_txn_id) DO UPDATE SET
    syncyard_id = EXCLUDED.syncyard_id, amount_cents = EXCLUDED.amount_cents,
    posted = EXCLUDED.posted, authorized = EXCLUDED.authorized,
    description = EXCLUDED.description,
    pending = EXCLUDED.pending, fingerprint = EXCLUDED.fingerprint,
    position = LEAST(i.position, EXCLUDED.position)
RETURNING 1)"""  # noqa: S608 - parameter numbers alone are formatted in


def _advance_versions(first: int) -> str:
    """Each connection's indexed version moved on (never back), from two arrays."""
    return f"""INSERT INTO syncyard_feed_index_version AS v
SELECT * FROM unnest(${first}::uuid[], ${first + 1}::bigint[])
ON CONFLICT (connection_id) DO UPDATE SET version = EXCLUDED.version
WHERE v.version < EXCLUDED.version"""  # noqa: S608 - parameter numbers alone


# The usual records of syncs running at the same time (one FeedAppended each,
# nothing withdrawn) in one statement and one implicit transaction: every
# record's rows and version commit together, or none does.
_RECORD_BATCH = f"WITH {_upsert_rows(1)}\n{_advance_versions(12)}"
# The same rows and versions written in the event store's own statement (see
# `with_events`): its insert function is the main query, so it takes the events
# table's lock first, and these run to completion after it, all in one implicit
# transaction: a sync's events and their index rows commit together, or neither.
_RECORD_WITH_EVENTS = (
    f"WITH {_upsert_rows(2)},\nadvanced AS (\n{_advance_versions(13)}\nRETURNING 1)\n"
)
_Row = tuple[str, str, str, int, date, date | None, str, bool, str, int]


class IndexWithEvents(NamedTuple):
    """Index rows to write in the same statement as the events they come from."""

    records: list[tuple[UUID, int]]  # each connection and the version its rows reach
    arguments: list[list[object]]  # $2.. of `with_events`'s statement

    def statement(self, insert_events: str) -> str:
        """`insert_events` (a SELECT whose only parameter is $1) with these rows written too."""
        return _RECORD_WITH_EVENTS + insert_events


class _Record(NamedTuple):
    """One sync's rows and version, waiting for the next batch to write them."""

    connection_id: UUID
    rows: list[_Row]
    version: int
    written: asyncio.Future[None] | None  # None: written with its events


class PostgresFeedIndex(FeedIndexPort):
    def __init__(self, pool: asyncpg.Pool, store: EventStorePort) -> None:
        self.pool = pool
        self.store = store
        # One connection's syncs run one at a time in a worker; this keeps a
        # catch-up and a record of the same connection from interleaving.
        self._locks = KeyedLocks()
        # A lower bound of each connection's indexed version, as this process last
        # wrote or read it: the version only grows, so a sync whose state is no newer
        # skips the catch-up's read (one round trip per sync).
        self._indexed: dict[UUID, int] = {}
        # Records wait here while a batch is being written, then go in the next
        # one: a round trip and a commit per batch of syncs, not per sync.
        self._waiting: list[_Record] = []
        self._writer: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
            await conn.execute(SCHEMA)

    async def known(
        self,
        connection_id: UUID,
        *,
        upto_version: int,
        provider: str,
        provider_ids: Sequence[str],
        around: tuple[date, date] | None,
    ) -> list[Known]:
        await self._catch_up(connection_id, upto_version)
        if not provider_ids and around is None:
            return []  # nothing to look up: the query could only match nothing
        first, last = around if around is not None else (None, None)
        rows = await self.pool.fetch(
            _KNOWN, connection_id, provider, list(provider_ids), first, last
        )
        return [
            Known(
                syncyard_id=r["syncyard_id"],
                provider=r["provider"],
                provider_id=r["provider_txn_id"],
                amount_cents=r["amount_cents"],
                posted=r["posted"],
                authorized=r["authorized"],
                description=r["description"],
                pending=r["pending"],
                fingerprint=r["fingerprint"],
                gone=r["gone"],
                withdrawn=r["withdrawn"],
                position=r["position"],
            )
            for r in rows
        ]

    async def record(self, connection_id: UUID, events: Sequence[DomainEvent]) -> None:
        if not events:
            return
        if self._indexed.get(connection_id, -1) >= events[-1].originator_version:
            return  # written with the events themselves (`with_events`)
        # Whatever came between what is indexed and these events (another writer's
        # feed event it did not index) first: the version must not jump past it.
        before = events[0].originator_version - 1
        if before > self._indexed.get(connection_id, 0):  # nothing is before a stream's first
            await self._catch_up(connection_id, before)
        async with self._locks.hold(connection_id):
            await self._apply(connection_id, events)

    def with_events(
        self, changes: Sequence[tuple[UUID, Sequence[DomainEvent]]]
    ) -> IndexWithEvents | None:
        """The rows of the usual syncs among `changes` (at most one `FeedAppended`,
        nothing withdrawn), for the event store to write in the statement that
        records them.

        Only a change the index is known to be caught up to qualifies (planning
        a sync catches it up, `known`), so its rows and version follow on from
        what is indexed. Other changes, and any
        batch the store records another way, are indexed by `record` as before.
        """
        records: list[_Record] = []
        for connection_id, events in changes:
            feed = [e for e in events if isinstance(e, FeedAppended)]
            if len(feed) > 1 or any(e.change == "removed" for f in feed for e in f.entries):
                continue
            if self._indexed.get(connection_id, -1) < events[0].originator_version - 1:
                continue  # the index is not known to be caught up to these events
            version = events[-1].originator_version
            # No FeedAppended (a sync that found nothing new, a failed one): the
            # version still moves on, so the next sync need not catch up.
            records.append(_Record(connection_id, _rows(feed[0]) if feed else [], version, None))
        if not records:
            return None
        rows, versions = _columns(records)
        return IndexWithEvents(
            records=[(r.connection_id, r.version) for r in records],
            arguments=[*rows, list(versions), list(versions.values())],
        )

    def indexed_with_events(self, records: Sequence[tuple[UUID, int]]) -> None:
        """The store committed `with_events`'s rows: later records of them are done."""
        for connection_id, version in records:
            self._known_indexed(connection_id, version)

    async def _catch_up(self, connection_id: UUID, version: int) -> None:
        if self._indexed.get(connection_id, -1) >= version:
            return
        async with self._locks.hold(connection_id):
            indexed = await self.pool.fetchval(
                "SELECT version FROM syncyard_feed_index_version WHERE connection_id = $1",
                connection_id,
            )
            if indexed is not None and indexed >= version:
                self._known_indexed(connection_id, indexed)
                return
            missed = await self.store.events_after(connection_id, int(indexed or 0))
            await self._apply(connection_id, [e for e in missed if e.originator_version <= version])

    def _known_indexed(self, connection_id: UUID, version: int) -> None:
        if version > self._indexed.get(connection_id, -1):
            self._indexed[connection_id] = version

    async def _apply(self, connection_id: UUID, events: Sequence[DomainEvent]) -> None:
        feed = [e for e in events if isinstance(e, FeedAppended)]
        if not events:
            return
        version = events[-1].originator_version
        if len(feed) <= 1 and not any(e.change == "removed" for f in feed for e in f.entries):
            await self._batched(connection_id, _rows(feed[0]) if feed else [], version)
            return
        async with self.pool.acquire() as conn, conn.transaction():
            for event in feed:
                latest = _rows(event)
                if latest:
                    columns = [list(column) for column in zip(*latest, strict=True)]
                    await conn.execute(_UPSERT, connection_id, *columns)
                removed = [e for e in event.entries if e.change == "removed"]
                if removed:
                    await conn.execute(
                        _WITHDRAW,
                        connection_id,
                        event.provider,
                        [e.syncyard_transaction_id for e in removed],
                        [e.provider_transaction_id for e in removed],
                    )
            await conn.execute(_ADVANCE, connection_id, version)
        self._known_indexed(connection_id, version)

    async def _batched(self, connection_id: UUID, rows: list[_Row], version: int) -> None:
        written = asyncio.get_running_loop().create_future()
        self._waiting.append(_Record(connection_id, rows, version, written))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting())
        await written

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._write(batch)
                except Exception:
                    # One record that cannot be written must not fail the syncs that
                    # happened to share its batch: each alone, each its own answer.
                    for record in batch:
                        try:
                            await self._write([record])
                        except Exception as exc:
                            _settle(record.written, exc)
                        else:
                            self._done(record)
                else:
                    for record in batch:
                        self._done(record)
        finally:
            self._writer = None

    def _done(self, record: _Record) -> None:
        self._known_indexed(record.connection_id, record.version)
        _settle(record.written, None)

    async def _write(self, batch: Sequence[_Record]) -> None:
        columns, versions = _columns(batch)
        await self.pool.execute(_RECORD_BATCH, *columns, list(versions), list(versions.values()))


def _columns(batch: Sequence[_Record]) -> tuple[list[list[object]], dict[UUID, int]]:
    """The batch's index rows as columns (each row once), and each connection's version."""
    rows: dict[tuple[UUID, str, str], tuple[UUID, *_Row]] = {}
    versions: dict[UUID, int] = {}
    for record in batch:
        for row in record.rows:
            key = (record.connection_id, row[0], row[1])
            earlier = rows.get(key)
            # A row twice in one statement is an error: the later stands, as above.
            position = row[9] if earlier is None else min(earlier[10], row[9])
            rows[key] = (record.connection_id, *row[:9], position)
        versions[record.connection_id] = max(record.version, versions.get(record.connection_id, 0))
    # In key order, in every writer: two statements upserting the same rows lock them
    # in one order, so they wait for each other rather than deadlock.
    ordered = [rows[key] for key in sorted(rows)]
    columns: list[list[object]] = (
        [list(c) for c in zip(*ordered, strict=True)] if ordered else [[]] * 11
    )
    return columns, dict(sorted(versions.items()))


def _settle(written: asyncio.Future[None] | None, error: BaseException | None) -> None:
    if written is None or written.done():  # its sync was cancelled meanwhile
        return
    if error is None:
        written.set_result(None)
    else:
        written.set_exception(error)


def _rows(event: FeedAppended) -> list[_Row]:
    """The index rows an event's entries and recognised copies make, each id once."""
    rows: list[_Row] = []
    for entry in event.entries:
        if entry.transaction is not None:
            rows.append(
                _row(
                    event.provider,
                    entry.provider_transaction_id,
                    entry.syncyard_transaction_id,
                    entry.transaction,
                    entry.position,
                )
            )
    for seen in event.recognised:
        rows.append(
            _row(
                event.provider,
                seen.provider_transaction_id,
                seen.syncyard_transaction_id,
                seen.transaction,
                seen.delivered_at,
            )
        )
    # One id twice in a walk (added, then modified on a later page):
    # the last content stands, the first position is where it began.
    latest: dict[tuple[str, str], _Row] = {}
    for row in rows:
        earlier = latest.get((row[0], row[1]))
        position = row[9] if earlier is None else min(earlier[9], row[9])
        latest[(row[0], row[1])] = (*row[:9], position)
    return list(latest.values())


def _row(
    provider: str, provider_id: str, syncyard_id: str, txn: FeedTransaction, position: int
) -> _Row:
    return (
        provider,
        provider_id,
        syncyard_id,
        cents(txn.amount),
        txn.date,
        txn.authorized_date,
        normalise(txn.merchant_name or txn.name),
        txn.pending,
        fingerprint(txn),
        position,
    )

"""The feed index's shortcuts (issue #13) on a real PostgreSQL: fewer round trips, nothing missed.

Syncs recording at the same time share one statement (a record that cannot be
written is retried alone, so it fails alone); the index remembers how far it
is, and the next sync of the connection in the same process skips the
catch-up's read of the version table. The events come from a list standing
in for the event store: what is under test is the index's own table.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import msgspec
import pytest

from events.base import DomainEvent
from events.feed import FeedAppended, FeedEntry, FeedTransaction
from infra.feed_index import PostgresFeedIndex

pytestmark = [pytest.mark.integration]

_VERSION_READ = "FROM syncyard_feed_index_version"


class StatementLog:
    """The real pool, with the SQL of every call made on it directly kept in order."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements: list[str] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements.append(sql)
        return await self.pool.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        return await self.pool.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        self.statements.append(sql)
        return await self.pool.execute(sql, *args)

    def acquire(self) -> Any:
        self.statements.append("acquire")
        return self.pool.acquire()

    def version_reads(self) -> int:
        return sum(_VERSION_READ in s and s.lstrip().startswith("SELECT") for s in self.statements)


class Stored:
    """The connection's events as the event store would give them back."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    async def events_after(self, stream_id: uuid.UUID, version: int) -> list[DomainEvent]:
        return [
            e
            for e in self.events
            if e.originator_id == stream_id and e.originator_version > version
        ]


def appended(connection_id: uuid.UUID, version: int, txn_id: str, position: int) -> FeedAppended:
    return FeedAppended(
        originator_id=connection_id,
        originator_version=version,
        timestamp=datetime(2026, 12, 4, tzinfo=UTC),
        command_id=f"sync-{version}",
        provider="plaid",
        cursor=f"c{version}",
        has_more=False,
        entries=(
            FeedEntry(
                position=position,
                change="added",
                syncyard_transaction_id=f"syt-{txn_id}",
                provider="plaid",
                provider_transaction_id=txn_id,
                transaction=FeedTransaction(
                    provider_account_id="acc",
                    amount="12.50",
                    date=date(2025, 1, 20),
                    name=f"Coffee {txn_id}",
                ),
            ),
        ),
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as created:
        yield created


async def _known_ids(index: PostgresFeedIndex, connection_id: uuid.UUID, version: int) -> set[str]:
    known = await index.known(
        connection_id,
        upto_version=version,
        provider="plaid",
        provider_ids=[],
        around=(date(2025, 1, 1), date(2025, 2, 1)),
    )
    return {k.provider_id for k in known}


async def test_the_next_sync_in_the_same_process_does_not_read_the_version_again(
    pool: asyncpg.Pool,
) -> None:
    stored = Stored()
    log = StatementLog(pool)
    index = PostgresFeedIndex(log, stored)  # type: ignore[arg-type]
    await index.setup()
    connection_id = uuid.uuid4()
    first = appended(connection_id, 2, "t1", 1)
    stored.events.append(first)
    await index.record(connection_id, [first])
    log.statements.clear()

    assert await _known_ids(index, connection_id, 2) == {"t1"}
    assert log.version_reads() == 0, log.statements
    # The record's rows and version went in together, in one statement.
    assert (
        await pool.fetchval(
            "SELECT version FROM syncyard_feed_index_version WHERE connection_id = $1",
            connection_id,
        )
        == 2
    )


async def test_what_another_replica_or_a_crash_left_unindexed_is_still_caught_up(
    pool: asyncpg.Pool,
) -> None:
    stored = Stored()
    here = PostgresFeedIndex(StatementLog(pool), stored)  # type: ignore[arg-type]
    there = PostgresFeedIndex(StatementLog(pool), stored)  # type: ignore[arg-type]
    await here.setup()
    connection_id = uuid.uuid4()
    first = appended(connection_id, 2, "t1", 1)
    stored.events.append(first)
    await here.record(connection_id, [first])
    # Another replica indexed the next sync; a crash then cut off the one after.
    second = appended(connection_id, 4, "t2", 2)
    third = appended(connection_id, 6, "t3", 3)
    stored.events += [second, third]
    await there.record(connection_id, [second])

    assert await _known_ids(here, connection_id, 6) == {"t1", "t2", "t3"}


async def test_a_page_with_nothing_to_look_up_asks_nothing(pool: asyncpg.Pool) -> None:
    log = StatementLog(pool)
    index = PostgresFeedIndex(log, Stored())  # type: ignore[arg-type]
    await index.setup()
    connection_id = uuid.uuid4()
    await index.record(connection_id, [appended(connection_id, 2, "t1", 1)])
    log.statements.clear()

    known = await index.known(
        connection_id, upto_version=2, provider="plaid", provider_ids=[], around=None
    )

    assert known == []
    assert log.statements == []


async def test_syncs_recording_at_the_same_time_share_one_statement(pool: asyncpg.Pool) -> None:
    log = StatementLog(pool)
    index = PostgresFeedIndex(log, Stored())  # type: ignore[arg-type]
    await index.setup()
    connections = [uuid.uuid4() for _ in range(3)]
    log.statements.clear()

    # Each its stream's first event: nothing before it to catch up with.
    await asyncio.gather(
        *(index.record(c, [appended(c, 1, f"t{i}", 1)]) for i, c in enumerate(connections))
    )

    assert len(log.statements) == 1, log.statements
    indexed = await pool.fetch("SELECT connection_id, version FROM syncyard_feed_index_version")
    assert {(r["connection_id"], r["version"]) for r in indexed} == {(c, 1) for c in connections}


async def test_a_record_that_cannot_be_written_fails_alone_not_its_batch(
    pool: asyncpg.Pool,
) -> None:
    index = PostgresFeedIndex(pool, Stored())  # type: ignore[arg-type]
    await index.setup()
    good, poisoned, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # More cents than a bigint holds: the batch's statement fails as a whole.
    too_big = msgspec.structs.replace(
        appended(poisoned, 2, "tx", 1).entries[0],
        transaction=FeedTransaction(
            provider_account_id="acc", amount="1" + "0" * 20, date=date(2025, 1, 20), name="x"
        ),
    )
    bad = msgspec.structs.replace(appended(poisoned, 2, "tx", 1), entries=(too_big,))

    outcomes = await asyncio.gather(
        index.record(good, [appended(good, 2, "t1", 1)]),
        index.record(poisoned, [bad]),
        index.record(other, [appended(other, 4, "t2", 1)]),
        return_exceptions=True,
    )

    assert outcomes[0] is None and outcomes[2] is None, outcomes
    assert isinstance(outcomes[1], Exception), outcomes
    indexed = await pool.fetch("SELECT connection_id, version FROM syncyard_feed_index_version")
    assert {(r["connection_id"], r["version"]) for r in indexed} == {(good, 2), (other, 4)}
    assert await _known_ids(index, good, 2) == {"t1"}
    # Its sync is not acknowledged; the redelivery's catch-up tries again from the store.


async def test_a_record_after_a_feed_event_nobody_indexed_takes_that_one_in_first(
    pool: asyncpg.Pool,
) -> None:
    stored = Stored()
    here = PostgresFeedIndex(StatementLog(pool), stored)  # type: ignore[arg-type]
    await here.setup()
    connection_id = uuid.uuid4()
    first = appended(connection_id, 2, "t1", 1)
    stored.events.append(first)
    await here.record(connection_id, [first])
    # Another writer recorded a feed event and died before indexing it; this sync's
    # record comes next (it planned without catching up: a saga's step, say).
    missed = appended(connection_id, 4, "t2", 2)
    ours = appended(connection_id, 6, "t3", 3)
    stored.events += [missed, ours]
    await here.record(connection_id, [ours])

    # The version did not jump past the missed event: its rows are in.
    assert await _known_ids(here, connection_id, 6) == {"t1", "t2", "t3"}

"""The group committer's writes over asyncpg, when the database drops the writer mid-flight.

The committer inserts a batch with one statement on a pooled asyncpg
connection; if that connection is lost, the batch goes through the library's
own insert (which reconnects and retries). Either way each decision is
recorded once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import cast

import asyncpg
import msgspec
import pytest

from events.connection import SyncCompleted, SyncDeferred
from events.saga import SagaStarted
from infra.bootstrap import Runtime
from services.connections.domain import connection_id_for
from services.ports import StreamConflictError
from tests.support.harness import SPACE, eventually, inject_fault, register, sync
from tests.support.lost_answers import CommitsThenDrops

pytestmark = pytest.mark.integration

WAITING_INSERT = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND wait_event_type = 'Lock' AND query LIKE '%es_insert_events%'"
)


async def test_a_writer_dropped_while_it_waits_to_insert_records_its_sync_once(
    syncyard: Runtime, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    registered = await syncyard.execute(register("acct-dropped", "plaid"))
    assert registered.success
    holder = await asyncpg.connect(database_url)
    admin = await asyncpg.connect(database_url)
    try:
        # Hold the events table's lock, so the committer's insert waits on it
        # with its connection open, then end that connection as a restart would.
        holder_tx = holder.transaction()
        await holder_tx.start()
        await holder.execute("LOCK TABLE syncyard_events IN EXCLUSIVE MODE")
        syncing = asyncio.create_task(syncyard.execute(sync("acct-dropped", "sync-dropped")))
        waiting = await eventually(lambda: admin.fetch(WAITING_INSERT), lambda rows: len(rows) == 1)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", waiting[0]["pid"])
        await holder_tx.commit()

        result = await syncing
    finally:
        await holder.close()
        await admin.close()

    assert result.success, result.error
    # The asyncpg insert lost its connection; the library's path recorded the batch.
    assert any("event insert failed" in r.getMessage() for r in caplog.records)
    events = await syncyard.store.events_after(connection_id_for(SPACE, "acct-dropped"), 0)
    completed = [e for e in events if isinstance(e, SyncCompleted)]
    assert [e.command_id for e in completed] == ["sync-dropped"]
    versions = [e.originator_version for e in events]
    assert versions == list(range(1, len(events) + 1))


# Fails the first write to the feed index's version table, and only the first: a
# sequence's increments are not undone with the transaction that made them.
FAIL_FIRST_INDEX_WRITE = """
CREATE SEQUENCE index_writes;
CREATE FUNCTION fail_first_index_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('index_writes') = 1 THEN
        RAISE EXCEPTION 'the index write fails this once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_first_index_write BEFORE INSERT OR UPDATE ON syncyard_feed_index_version
    FOR EACH ROW EXECUTE FUNCTION fail_first_index_write();
"""


async def test_a_sync_whose_index_rows_cannot_go_with_its_events_is_recorded_and_indexed(
    syncyard: Runtime, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await syncyard.execute(register("acct-index", "plaid"))).success
    # A first sync catches the index up with the registration: the next plans
    # without writing to the index before its commit.
    first = await syncyard.execute(sync("acct-index", "sync-first", count=5))
    assert first.success and first.data is not None and first.data["has_more"]
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(FAIL_FIRST_INDEX_WRITE)
        result = await syncyard.execute(sync("acct-index", "sync-index", count=5))
        indexed = await admin.fetchval(
            "SELECT version FROM syncyard_feed_index_version WHERE connection_id = $1",
            connection_id_for(SPACE, "acct-index"),
        )
        rows = await admin.fetchval(
            "SELECT count(*) FROM syncyard_feed_index WHERE connection_id = $1",
            connection_id_for(SPACE, "acct-index"),
        )
        assert await admin.fetchval("SELECT last_value FROM index_writes") >= 2
    finally:
        await admin.close()

    # The statement with the index rows failed as a whole; the events went in
    # the library's way, and the sync then indexed them itself.
    assert result.success, result.error
    assert result.data is not None and result.data["entries"]
    assert any("event insert failed" in r.getMessage() for r in caplog.records)
    events = await syncyard.store.events_after(connection_id_for(SPACE, "acct-index"), 0)
    completed = [e.command_id for e in events if isinstance(e, SyncCompleted)]
    assert completed == ["sync-first", "sync-index"]
    assert indexed == events[-1].originator_version
    assert rows == len(first.data["entries"]) + len(result.data["entries"])


async def test_a_deferral_whose_commit_lost_its_answer_still_gets_its_timer(
    syncyard: Runtime, sandbox: str, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await syncyard.execute(register("acct-lost", "plaid"))).success
    await inject_fault(sandbox, provider="plaid", endpoint="/transactions/sync", status=500)
    syncyard.store.pool = cast("asyncpg.Pool", CommitsThenDrops(syncyard.store.pool))

    result = await syncyard.execute(sync("acct-lost", "sync-lost"))

    # The deferral was committed; the answer lost, the library's path then found the
    # versions taken, by this very decision: it is answered as recorded.
    assert any("event insert failed" in r.getMessage() for r in caplog.records)
    assert not result.success and result.deferred_until is not None
    assert not result.duplicate  # the command's only answer: it was sent once
    events = await syncyard.store.events_after(connection_id_for(SPACE, "acct-lost"), 0)
    assert [e.command_id for e in events if isinstance(e, SyncDeferred)] == ["sync-lost"]
    conn = await asyncpg.connect(database_url)
    try:
        timers = await conn.fetch("SELECT key FROM syncyard_timers WHERE kind = 'deferral'")
    finally:
        await conn.close()
    # Its timer is set, or the command, acknowledged, would never run again.
    assert len(timers) == 1 and "sync-lost" in timers[0]["key"]


async def test_an_append_whose_commit_lost_its_answer_is_not_reported_as_a_conflict(
    syncyard: Runtime,
) -> None:
    started = SagaStarted(
        originator_id=uuid.uuid4(),
        originator_version=1,
        timestamp=datetime.now(UTC),
        kind="link",
        command_id="link-lost",
        space_id=SPACE,
        account_id="acct-saga-lost",
        connection_id=uuid.uuid4(),
    )
    syncyard.store.pool = cast("asyncpg.Pool", CommitsThenDrops(syncyard.store.pool))

    # Committed, then the answer lost: the library's path finds version 1 taken, by
    # these very events. A conflict here would make a saga's holder give up its lease.
    await syncyard.store.append([started])

    assert syncyard.sagas is not None
    assert await syncyard.sagas.events(started.originator_id) == [started]
    # Another writer's event at the same version is still a conflict.
    rival = msgspec.structs.replace(started, command_id="link-rival")
    with pytest.raises(StreamConflictError):
        await syncyard.store.append([rival])

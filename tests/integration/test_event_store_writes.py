"""The group committer's writes over asyncpg, when the database drops the writer mid-flight.

The committer inserts a batch with one statement on a pooled asyncpg
connection; if that connection is lost, the batch goes through the library's
own insert (which reconnects and retries). Either way each decision is
recorded once.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from events.connection import SyncCompleted
from infra.bootstrap import Runtime
from services.connections.domain import connection_id_for
from tests.support.harness import SPACE, eventually, register, sync

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

"""An event stored in its version-1 shape is read in the current shape everywhere."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from events.connection import ConnectionAttempted
from events.upcasting import topic_name
from infra.bootstrap import Runtime
from services.connections.state import connection_id_for
from tests.integration.test_cli import syncyard_cli
from tests.integration.test_replay import caught_up, cli_env
from tests.support.harness import Client, eventually, register, stream_messages

pytestmark = pytest.mark.integration

V1_ATTEMPT = {
    "originator_version": 3,
    "timestamp": "2026-11-23T09:00:00Z",
    "metadata": {"command_id": "old-sync"},
    "command_id": "old-sync",
    "op": "sync.transactions",
    "provider": "plaid",
    "region": "US",
    "attempt": 1,
    "failover": False,
    "outcome": "timeout",
    "latency_ms": 1234.5,  # version 1's name for response_time_ms; no error_type yet
    "error_code": "TIMEOUT",
    "error_message": "no answer",
}


async def test_a_raw_version_1_event_is_upcast_by_the_reader_the_store_the_relay_and_a_replay(
    syncyard: Runtime, upstream: Client, database_url: str, nats_url: str
) -> None:
    assert (await upstream.send(register("old-1", "plaid"))).success
    cid = connection_id_for("space-1", "old-1")
    cipher = syncyard.store.mapper.cipher
    assert cipher is not None
    state = msgspec.json.encode({"originator_id": str(cid), **V1_ATTEMPT})
    await syncyard.pool.execute(
        "INSERT INTO syncyard_events (originator_id, originator_version, topic, state) "
        "VALUES ($1, 3, $2, $3)",
        cid,
        topic_name(ConnectionAttempted),
        cipher.encrypt(state),
    )

    async with syncyard.pool.acquire() as conn:
        page = await syncyard.reader.read(conn, 0, 100)
        plain = await syncyard.reader.read_plain(conn, 0, 100)
    [read] = [n.event for n in page.notifications if isinstance(n.event, ConnectionAttempted)]
    assert read.response_time_ms == 1234.5 and read.error_type == "network"
    assert read.timestamp == datetime(2026, 11, 23, 9, tzinfo=UTC)
    assert b'"response_time_ms":1234.5' in plain[-1].state and b"latency" not in plain[-1].state

    through_library = list(syncyard.store.app.events.get(cid))
    assert through_library[-1] == read
    syncyard.store.forget(cid)
    folded = await syncyard.store.get_connection(cid)
    assert folded is not None and folded.version == 3

    published = await eventually(
        lambda: stream_messages(nats_url, "syncyard.evt.connection.ConnectionAttempted"),
        bool,
    )
    assert msgspec.json.decode(published[-1].data, type=ConnectionAttempted) == read

    await caught_up(syncyard.pool)
    row = await syncyard.pool.fetchrow(
        "SELECT response_time_ms, error_type FROM connection_attempts WHERE command_id = 'old-sync'"
    )
    assert row is not None and (row["response_time_ms"], row["error_type"]) == (1234.5, "network")
    code, out = await syncyard_cli("replay", "--verify", env=cli_env(database_url))
    assert code == 0, out

"""The projection engine: exactly once across processes and kills, versions, lag, schemas."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from events.connection import CONNECTION_EVENT_TYPES
from infra.eventlog.projector import Projector
from infra.eventlog.reader import NotificationLogReader
from infra.eventstore import EVENTS_TABLE, store_mapper
from projections.engine import (
    ProjectionVersionError,
    apply_next_page,
    migrate,
    projection_lag,
    register_lag_gauge,
)
from projections.rebuild import build
from services.ports import DbConnection, Notification
from tests.integration.projector_process import CountingProjection
from tests.support.eventgen import write_events
from tests.support.harness import CIPHER_KEY, eventually, gauge_values

pytestmark = pytest.mark.integration

EVENTS = 30_000


async def counted_position(pool: asyncpg.Pool) -> int:
    try:
        value = await pool.fetchval(
            "SELECT position FROM syncyard_projection_position WHERE projection = 'counting'"
        )
    except asyncpg.UndefinedTableError:
        return 0
    return int(value or 0)


async def start_projector(database_url: str, pause_s: float = 0.0) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.projector_process",
        database_url,
        CIPHER_KEY,
        str(pause_s),
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    assert b"projecting" in await asyncio.wait_for(proc.stdout.readline(), 10)
    return proc


async def kill_mid_page(proc: asyncio.subprocess.Process, after: int) -> int:
    """SIGKILL `proc` right after it wrote a page past `after` but before it commits."""
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert line, "the projector exited before it could be killed"
        if line.startswith(b"mid-page") and int(line.split()[1]) > after:
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
            return int(line.split()[1])


@pytest.fixture
async def backlog(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """EVENTS stored events waiting for a projector, and a pool to watch it with."""
    await write_events(database_url, CIPHER_KEY, EVENTS, connections=200)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def test_two_projector_processes_killed_mid_page_and_restarted_apply_each_event_once(
    database_url: str, backlog: asyncpg.Pool
) -> None:
    # Each page's transaction stays open 50 ms after its rows are written.
    first = await start_projector(database_url, pause_s=0.05)
    second = await start_projector(database_url, pause_s=0.05)
    killed_in = [await kill_mid_page(first, EVENTS // 5)]
    killed_in.append(await kill_mid_page(second, killed_in[0]))
    stopped_at = await counted_position(backlog)
    assert stopped_at < killed_in[1] <= EVENTS  # the last page written was never committed
    # Only committed pages count: rows, total and position agree.
    assert await backlog.fetchval("SELECT count(*) FROM counted_events") == stopped_at
    assert await backlog.fetchval("SELECT events FROM counted_total") == stopped_at

    restarted = await start_projector(database_url)
    try:
        await eventually(lambda: counted_position(backlog), lambda p: p == EVENTS, timeout=30)
    finally:
        restarted.send_signal(signal.SIGTERM)
        out, _ = await restarted.communicate()
    assert restarted.returncode == 0, out.decode()

    applied = await backlog.fetch("SELECT notification_id FROM counted_events ORDER BY 1")
    stored = await backlog.fetch("SELECT notification_id FROM syncyard_events ORDER BY 1")
    assert [r[0] for r in applied] == [r[0] for r in stored]  # no gap, no repeat
    assert await backlog.fetchval("SELECT events FROM counted_total") == EVENTS


async def test_lag_reports_each_projection_behind_the_head_until_it_catches_up(
    database_url: str, backlog: asyncpg.Pool
) -> None:
    assert await projection_lag(backlog) == []  # no projector has run yet
    projector = await start_projector(database_url)
    try:
        first = await eventually(
            lambda: projection_lag(backlog), lambda rows: bool(rows) and rows[0]["position"] > 0
        )
        assert first[0]["projection"] == "counting" and first[0]["head"] == EVENTS
        assert first[0]["behind"] == EVENTS - first[0]["position"]
        done = await eventually(lambda: projection_lag(backlog), lambda r: r[0]["behind"] == 0)
        assert done[0]["position"] == EVENTS
    finally:
        projector.send_signal(signal.SIGTERM)
        await projector.wait()


class CountingV2(CountingProjection):
    version = 2


async def test_a_projection_whose_version_changed_is_dropped_and_rebuilt_from_zero(
    database_url: str, backlog: asyncpg.Pool
) -> None:
    reader = NotificationLogReader(EVENTS_TABLE, store_mapper(CIPHER_KEY))
    assert await migrate(backlog, [CountingProjection()]) == []
    async with backlog.acquire() as conn:
        for _ in range(3):
            await apply_next_page(conn, reader, [CountingProjection()], page_size=1000)
    assert await backlog.fetchval("SELECT count(*) FROM counted_events") == 3000

    assert await migrate(backlog, [CountingProjection()]) == []  # same version: kept
    assert await counted_position(backlog) == 3000
    assert await migrate(backlog, [CountingV2()]) == ["counting"]
    assert await backlog.fetchval("SELECT count(*) FROM counted_events") == 0
    assert await counted_position(backlog) == 0
    async with backlog.acquire() as conn:
        await apply_next_page(conn, reader, [CountingV2()], page_size=1000)
    assert await backlog.fetchval("SELECT events FROM counted_total") == 1000


async def test_a_build_in_another_schema_leaves_the_live_tables_alone(
    database_url: str, backlog: asyncpg.Pool
) -> None:
    reader = NotificationLogReader(EVENTS_TABLE, store_mapper(CIPHER_KEY))
    await migrate(backlog, [CountingProjection()])
    position = await build(backlog, reader, [CountingProjection()], "side_build", upto=5000)
    assert position == 5000
    assert await backlog.fetchval("SELECT events FROM side_build.counted_total") == 5000
    assert await backlog.fetchval("SELECT events FROM public.counted_total") == 0
    assert await counted_position(backlog) == 0
    assert [r["position"] for r in await projection_lag(backlog, schema="side_build")] == [5000]


async def test_the_lag_gauge_reports_how_far_each_live_projection_is_behind(
    database_url: str, backlog: asyncpg.Pool
) -> None:
    metrics_reader = InMemoryMetricReader()
    register_lag_gauge(MeterProvider(metric_readers=[metrics_reader]))
    reader = NotificationLogReader(EVENTS_TABLE, store_mapper(CIPHER_KEY))
    projector = Projector(backlog, reader, [CountingProjection()], page_size=1000)
    await migrate(backlog, projector.projections)
    await projector.catch_up_once(projector.projections)
    await projector.measure_lag()
    assert gauge_values(metrics_reader, "syncyard.projection.lag", "projection") == {
        "counting": EVENTS - 1000
    }
    await projector.catch_up()
    await projector.measure_lag()
    assert gauge_values(metrics_reader, "syncyard.projection.lag", "projection") == {"counting": 0}


async def test_lag_on_a_database_with_nothing_yet_is_empty_and_spares_the_callers_transaction(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            assert await projection_lag(conn) == []
            assert await conn.fetchval("SELECT 1") == 1  # the transaction is still usable
    finally:
        await conn.close()


class ConnectionCounting(CountingProjection):
    """A second read model on the same pages, reading only the connection events."""

    name = "connection_counting"
    tables = ("connection_counted_events", "connection_counted_total")
    schema = """
    CREATE TABLE IF NOT EXISTS connection_counted_events (notification_id bigint PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS connection_counted_total (one int PRIMARY KEY, events bigint);
    INSERT INTO connection_counted_total VALUES (1, 0) ON CONFLICT DO NOTHING;
    """
    handles = CONNECTION_EVENT_TYPES

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        await conn.executemany(
            "INSERT INTO connection_counted_events VALUES ($1)", [(n.id,) for n in notes]
        )
        await conn.execute("UPDATE connection_counted_total SET events = events + $1", len(notes))


class ConnectionCountingV2(ConnectionCounting):
    version = 2


async def stored_with_topics(pool: asyncpg.Pool, projection: ConnectionCounting) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM syncyard_events WHERE topic = ANY($1::text[])",
            list(projection.topics()),
        )
    )


async def test_read_models_share_pages_and_one_reset_to_zero_catches_up_beside_the_others(
    database_url: str, backlog: asyncpg.Pool
) -> None:
    reader = NotificationLogReader(EVENTS_TABLE, store_mapper(CIPHER_KEY))
    projector = Projector(backlog, reader, [CountingProjection(), ConnectionCounting()])
    await migrate(backlog, projector.projections)
    assert await projector.catch_up() == EVENTS
    connection_events = await stored_with_topics(backlog, ConnectionCounting())
    assert 0 < connection_events < EVENTS  # the shared page held events it skipped
    assert await backlog.fetchval("SELECT events FROM counted_total") == EVENTS
    assert await backlog.fetchval("SELECT events FROM connection_counted_total") == (
        connection_events
    )

    # A new version of one read model: migrate resets it alone to zero.
    projector = Projector(backlog, reader, [CountingProjection(), ConnectionCountingV2()])
    assert await migrate(backlog, projector.projections) == ["connection_counting"]
    # Its own cohort: it reads the log again while the current one has nothing to do.
    assert await projector.catch_up() == EVENTS
    total = EVENTS
    # Every event once in each (the primary keys refuse a second insert).
    assert await backlog.fetchval("SELECT events FROM counted_total") == total
    assert await backlog.fetchval("SELECT count(*) FROM counted_events") == total
    assert await backlog.fetchval("SELECT events FROM connection_counted_total") == (
        await stored_with_topics(backlog, ConnectionCountingV2())
    )
    positions = await projector.positions()
    assert positions == {"counting": total, "connection_counting": total}


async def test_in_a_rolling_deploy_the_old_projector_leaves_a_read_model_the_new_one_migrated(
    database_url: str, backlog: asyncpg.Pool
) -> None:
    reader = NotificationLogReader(EVENTS_TABLE, store_mapper(CIPHER_KEY))
    old = Projector(backlog, reader, [CountingProjection(), ConnectionCounting()], page_size=1000)
    await migrate(backlog, old.projections)
    await old.catch_up_once(old.projections)  # the old code at work: one page in

    # The new code's replica starts: `counting` is at version 2 now, rebuilt from zero.
    assert await migrate(backlog, [CountingV2()]) == ["counting"]
    assert await old.catch_up() == EVENTS - 1000  # the other read model goes on ...
    assert [p.name for p in old.projections] == ["connection_counting"]
    assert await counted_position(backlog) == 0  # ... and the rebuilt one was not written
    assert await backlog.fetchval("SELECT events FROM counted_total") == 0

    # Nor is it migrated back, by the old projector's restart or anything else.
    assert await migrate(backlog, [CountingProjection()], skip_newer=True) == []
    with pytest.raises(ProjectionVersionError, match="version 2 in the database is newer"):
        await migrate(backlog, [CountingProjection()])
    stored = await backlog.fetchval(
        "SELECT version FROM syncyard_projection_position WHERE projection = 'counting'"
    )
    assert stored == 2

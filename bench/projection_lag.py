"""Projection lag at a steady write rate: event stamped → its read-model rows committed.

`python -m bench.projection_lag [--quick] [--rate N] [--seconds S]` (goal,
issue #6: p99 ≤ 100 ms at 1,000 events/s). A writer process appends events
through the real event store (eventsourcing's recorder, which NOTIFYs on
each insert) at a steady rate, 4 events per transaction (two commands'
worth, as the group committer saves them); each event is stamped just before
its save. The projector runs in this process, as `syncyard serve
--components projector` runs it. Measured in the same run, one phase after
the other:

- (l0) the writer's own save → commit time (every lag below includes it);
- (l1) the engine alone: the same projector with one read model that writes
  nothing (wake on NOTIFY, read, decode, position update, commit);
- (l2) every live read model (`all_projections()`): the lag of an event is
  when the last read model that handles it committed it;
- (l2') the same with a page and a transaction per read model, as the engine
  tailed them before they shared pages: the baseline for (l2)'s CPU.

Each phase also reports the projector process's CPU time per 1,000 events.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.report import pct
from bench.servers import CIPHER_KEY, fresh_database
from events.base import DomainEvent
from events.connection import (
    CONNECTION_EVENT_TYPES,
    ConnectionAttempted,
    ConnectionRegistered,
    SyncCompleted,
)
from infra.bootstrap import pg_parts
from infra.embedded import EmbeddedPostgres
from infra.eventlog.projector import Projector
from infra.eventlog.reader import NotificationLogReader
from infra.eventstore import EVENTS_TABLE, SyncyardApplication, library_env, store_mapper
from projections.engine import POSITIONS, Projection, migrate
from projections.registry import all_projections
from services.connections.state import connection_id_for
from services.ports import DbConnection, Notification
from tests.support.eventgen import create_events_table

EVENTS_PER_SAVE = 4
CONNECTIONS = 100


def _write_steadily(db_url: str, space: str, rate: float, seconds: float, out: Any) -> None:
    """The writer process: `rate` events/s for `seconds`; sends back its commit times."""
    app = SyncyardApplication(library_env(pg_parts(db_url), CIPHER_KEY))
    rng = random.Random(1)
    ids = [connection_id_for(space, f"acct-{n}") for n in range(CONNECTIONS)]
    versions = dict.fromkeys(ids, 0)

    def stamp(cid: Any) -> dict[str, Any]:
        versions[cid] += 1
        return {
            "originator_id": cid,
            "originator_version": versions[cid],
            "timestamp": datetime.now(UTC),
        }

    registered = [
        ConnectionRegistered(
            **stamp(cid), space_id=space, account_id=str(n), institution_id=None, region="US"
        )
        for n, cid in enumerate(ids)
    ]
    app.events.put(registered)
    commits: list[float] = []
    interval = EVENTS_PER_SAVE / rate
    started = time.perf_counter()
    for n in range(int(seconds * rate / EVENTS_PER_SAVE)):
        delay = started + n * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        events: list[DomainEvent] = []
        for k in range(EVENTS_PER_SAVE // 2):
            cid = rng.choice(ids)
            command: dict[str, Any] = {"command_id": f"c{n}-{k}", "op": "sync.transactions"}
            events.append(
                ConnectionAttempted(
                    **stamp(cid),
                    **command,
                    provider="plaid",
                    region="US",
                    attempt=1,
                    failover=False,
                    outcome="success",
                    response_time_ms=120.0,
                )
            )
            events.append(
                SyncCompleted(
                    **stamp(cid),
                    **command,
                    provider="plaid",
                    failover_used=False,
                    attempts=1,
                    response_time_ms=120.0,
                )
            )
        before = time.perf_counter()
        app.events.put(events)
        commits.append((time.perf_counter() - before) * 1000)
    out.send((commits, (len(commits) * EVENTS_PER_SAVE) / (time.perf_counter() - started)))
    app.close()


class _NoWrites(Projection):
    name = "bench_no_writes"
    schema = "SELECT 1"  # no tables
    handles = CONNECTION_EVENT_TYPES

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        return None


class _Recorded(Projection):
    """A read model whose page is remembered until the projector has committed it."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name, self.schema, self.handles = inner.name, inner.schema, inner.handles
        self.tables, self.version = inner.tables, inner.version
        self.pending: list[Notification] = []

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        await self.inner.apply_page(conn, notes)
        self.pending = notes


class _TimedProjector(Projector):
    def __init__(self, *args: Any, shared: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared = shared
        self.lag_ms: dict[int, float] = {}

    async def current_cohorts(self) -> list[list[Projection]]:
        if self.shared:
            return await super().current_cohorts()
        return [[p] for p in self.projections]  # as before pages were shared: one each

    async def catch_up_once(self, projections: Sequence[Projection]) -> int:
        read = await super().catch_up_once(projections)
        now = time.time()
        for projection in projections:
            assert isinstance(projection, _Recorded)
            for note in projection.pending:
                lag = (now - note.event.timestamp.timestamp()) * 1000
                self.lag_ms[note.id] = max(lag, self.lag_ms.get(note.id, 0.0))
            projection.pending = []
        return read


async def _phase(
    db: str, projections: list[Projection], rate: float, seconds: float, *, shared: bool = True
) -> Any:
    pool = await asyncpg.create_pool(db, min_size=2, max_size=4)
    reader = NotificationLogReader(EVENTS_TABLE, store_mapper(CIPHER_KEY))
    recorded = [_Recorded(p) for p in projections]
    await migrate(pool, recorded)
    async with pool.acquire() as conn:
        head = await reader.max_id(conn)
    await pool.execute(f"UPDATE {POSITIONS} SET position = $1", head)  # noqa: S608
    projector = _TimedProjector(pool, reader, list(recorded), shared=shared)
    stop = asyncio.Event()
    cpu_started = time.process_time()
    running = asyncio.create_task(projector.run(stop))
    receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
    writer = multiprocessing.get_context("spawn").Process(
        target=_write_steadily, args=(db, uuid.uuid4().hex, rate, seconds, send)
    )
    writer.start()
    commits, achieved = await asyncio.to_thread(receive.recv)
    await asyncio.to_thread(writer.join)
    await asyncio.sleep(1.0)  # the last events' pages
    stop.set()
    await running
    cpu_s = time.process_time() - cpu_started
    await pool.close()
    # The writer's first save registers its connections at once: not steady traffic.
    steady = head + CONNECTIONS
    lags = [lag for note_id, lag in projector.lag_ms.items() if note_id > steady]
    # This process is the projector's (the writer runs in its own).
    cpu_ms_per_1000 = cpu_s * 1000 / max(1, len(projector.lag_ms)) * 1000
    return commits, achieved, lags, cpu_ms_per_1000


async def main(quick: bool, rate: float = 1000.0, seconds: float | None = None) -> None:
    duration = seconds or (5.0 if quick else 20.0)
    with tempfile.TemporaryDirectory(prefix="syncyard-bench-") as tmp:
        async with EmbeddedPostgres(Path(tmp)) as pg:
            db = await fresh_database(pg.url)
            await asyncio.to_thread(create_events_table, db, CIPHER_KEY)
            commits, achieved, engine, engine_cpu = await _phase(db, [_NoWrites()], rate, duration)
            _, achieved_live, live, live_cpu = await _phase(db, all_projections(), rate, duration)
            _, achieved_apart, apart, apart_cpu = await _phase(
                db, all_projections(), rate, duration, shared=False
            )
    print(f"\nprojection lag — {rate:,.0f} events/s for {duration:.0f} s per phase\n")
    print(
        "| measure | p50 | p99 | max | rate achieved | projector CPU per 1,000 events |\n"
        "| --- | --- | --- | --- | --- | --- |"
    )
    rows = [
        ("(l0) writer: save → commit", commits, achieved, None),
        ("(l1) engine, a read model that writes nothing", engine, achieved, engine_cpu),
        (f"(l2) all {len(all_projections())} live read models", live, achieved_live, live_cpu),
        (
            "(l2') the same, a page per read model (the engine before 2026-12-02)",
            apart,
            achieved_apart,
            apart_cpu,
        ),
    ]
    for label, values, events_per_s, cpu in rows:
        print(
            f"| {label} | {pct(values, 50):.1f} ms | {pct(values, 99):.1f} ms | "
            f"{max(values):.1f} ms | {events_per_s:,.0f} events/s | "
            f"{'' if cpu is None else f'{cpu:.0f} ms'} |"
        )
    verdict = "met" if pct(live, 99) <= 100 else "missed"
    print(f"\ngoal p99 ≤ 100 ms at 1,000 events/s (l2): {verdict}")
    print(f"CPU per event, shared pages / a page each (l2 / l2'): {live_cpu / apart_cpu:.2f}×")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.projection_lag")
    parser.add_argument("--quick", action="store_true", help="5 s phases instead of 20 s")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s written")
    parser.add_argument("--seconds", type=float, help="length of each phase")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.rate, args.seconds))

"""Replay rate: read models rebuilt from N stored events, beside raw read and decode rates.

`python -m bench.replay [--events N] [--quick]` (goal, issue #6: ≥ 50,000
events/s on 1,000,000 events). The events are generated and COPYed straight
into the store's table (`tests/support/eventgen.py`), encrypted as the mapper does.
Measured in the same run, on the same rows:

- (r1) raw PostgreSQL: page through the table with asyncpg, nothing decoded;
- (r2) the notification-log reader: pages decrypted and decoded (every topic);
- (r3) a full replay of every rebuildable read model into a fresh schema
  (`projections.rebuild.build`: one read per page for all of them);
- (r4) the same replay for each read model alone, to see which one costs;
- (r5) the replayed `connection_attempts` rows written again, by asyncpg's
  `executemany` and by COPY into a staging table then one INSERT … SELECT
  (what `connection_attempts` and `sync_log` do: `projections/bulk.py`).

(r2) runs with the collector's default thresholds; (r3) and (r4) go through
`build`, which raises them while it runs (`projections/replay_gc.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.servers import CIPHER_KEY, fresh_database
from infra.embedded import EmbeddedPostgres
from infra.eventlog.reader import NotificationLogReader
from infra.eventstore import EVENTS_TABLE, store_mapper
from projections.engine import Projection, migrate
from projections.rebuild import REPLAY_PAGE_SIZE, build, drop_schema
from projections.registry import all_projections
from tests.support.eventgen import write_events

DEFAULT_EVENTS = 200_000
GOAL = 50_000


async def raw_read(pool: asyncpg.Pool, head: int) -> float:
    query = (
        "SELECT notification_id, originator_id, originator_version, topic, state "  # noqa: S608
        f"FROM {EVENTS_TABLE} WHERE notification_id > $1 ORDER BY notification_id LIMIT $2"
    )
    started, position = time.perf_counter(), 0
    async with pool.acquire() as conn:
        while position < head:
            rows = await conn.fetch(query, position, REPLAY_PAGE_SIZE)
            position = rows[-1]["notification_id"]
    return head / (time.perf_counter() - started)


async def decoded_read(pool: asyncpg.Pool, reader: NotificationLogReader, head: int) -> float:
    started, position = time.perf_counter(), 0
    async with pool.acquire() as conn:
        while position < head:
            position = (await reader.read(conn, position, REPLAY_PAGE_SIZE)).last_id
    return head / (time.perf_counter() - started)


async def replay(
    pool: asyncpg.Pool,
    reader: NotificationLogReader,
    projections: list[Projection],
    head: int,
    profile: Path | None = None,
) -> float:
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    await build(pool, reader, projections, "bench_replay")
    if profiler and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    return head / (time.perf_counter() - started)


async def write_paths(
    pool: asyncpg.Pool, projection: Projection, table: str
) -> tuple[float, float]:
    """Rows/s writing the replayed rows of `table` again: executemany vs COPY + INSERT SELECT."""
    records = await pool.fetch(f"SELECT * FROM bench_replay.{table}")  # noqa: S608
    rows, columns = [tuple(r) for r in records], list(records[0].keys())
    chunks = [rows[k : k + 2500] for k in range(0, len(rows), 2500)]
    rates = []
    for path in ("executemany", "copy"):
        schema = f"bench_{path}"
        await drop_schema(pool, schema)
        await migrate(pool, [projection], schema=schema)
        started = time.perf_counter()
        async with pool.acquire() as conn:
            for chunk in chunks:
                async with conn.transaction():
                    await _write(conn, path, f"{schema}.{table}", columns, chunk)
        rates.append(len(rows) / (time.perf_counter() - started))
        await drop_schema(pool, schema)
    return rates[0], rates[1]


async def _write(
    conn: Any, path: str, table: str, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    if path == "executemany":
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        await conn.executemany(
            f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT DO NOTHING",  # noqa: S608
            rows,
        )
        return
    await conn.execute(f"CREATE TEMP TABLE staged (LIKE {table}) ON COMMIT DROP")
    await conn.copy_records_to_table("staged", records=rows, columns=columns)
    await conn.execute(f"INSERT INTO {table} SELECT * FROM staged ON CONFLICT DO NOTHING")  # noqa: S608


async def main(quick: bool, events: int | None = None, profile: Path | None = None) -> None:
    count = events or (DEFAULT_EVENTS // 4 if quick else DEFAULT_EVENTS)
    projections = [p for p in all_projections() if p.tables]
    with tempfile.TemporaryDirectory(prefix="syncyard-bench-") as tmp:
        async with EmbeddedPostgres(Path(tmp)) as pg:
            db = await fresh_database(pg.url)
            started = time.perf_counter()
            await write_events(db, CIPHER_KEY, count)
            generated = count / (time.perf_counter() - started)
            pool = await asyncpg.create_pool(db, min_size=1, max_size=8)
            try:
                await pool.execute(f"VACUUM ANALYZE {EVENTS_TABLE}")
                reader = NotificationLogReader(EVENTS_TABLE, store_mapper(CIPHER_KEY))
                async with pool.acquire() as conn:
                    head = await reader.max_id(conn)
                raw = await raw_read(pool, head)
                decoded = await decoded_read(pool, reader, head)
                full = await replay(pool, reader, projections, head, profile)
                attempts = next(p for p in projections if p.name == "connection_attempts")
                many, copied = await write_paths(pool, attempts, "connection_attempts")
                alone = {p.name: await replay(pool, reader, [p], head) for p in projections}
                await drop_schema(pool, "bench_replay")
            finally:
                await pool.close()
    print(f"\nreplay — {count:,} stored events, page {REPLAY_PAGE_SIZE:,}\n")
    print("| measure | events/s | against the baseline |\n| --- | --- | --- |")
    print(f"| generating + COPY into the store (setup) | {generated:,.0f} | |")
    print(f"| (r1) raw PostgreSQL read, nothing decoded | {raw:,.0f} | baseline |")
    print(
        f"| (r2) reader: decrypt + upcast + decode | {decoded:,.0f} | {decoded / raw:.2f}× (r1) |"
    )
    verdict = "met" if full >= GOAL else "missed"
    print(
        f"| (r3) replay of {len(projections)} read models | {full:,.0f} | "
        f"{full / raw:.2f}× (r1), {full / decoded:.2f}× (r2); goal ≥ {GOAL:,}: {verdict} |"
    )
    for name, rate in alone.items():
        print(f"| (r4) replay of {name} alone | {rate:,.0f} | {rate / decoded:.2f}× (r2) |")
    print(f"| (r5) connection_attempts rows by executemany (rows/s) | {many:,.0f} | baseline |")
    print(
        f"| (r5) the same rows by COPY + INSERT … SELECT (rows/s) | {copied:,.0f} | "
        f"{copied / many:.2f}× executemany |"
    )
    if profile:
        pstats.Stats(str(profile)).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("--quick", action="store_true", help="a quarter of the events")
    parser.add_argument("--events", type=int, help=f"stored events (default {DEFAULT_EVENTS:,})")
    parser.add_argument("--profile", type=Path, help="cProfile the full replay into this file")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.events, args.profile))

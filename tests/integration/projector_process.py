"""A projector process for the exactly-once tests: it records every event it applies.

`python -m tests.integration.projector_process DATABASE_URL CIPHER_KEY [PAUSE_S]`
runs the real `Projector` with one read model whose rows have no ON CONFLICT
escape: an event applied twice fails its transaction, and the process dies.
With a pause, each page's rows are written, "mid-page" is printed, and the
transaction stays open that long before it commits: a kill right after the
line lands inside it.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import asyncpg

from events.breaker import BREAKER_EVENT_TYPES
from events.connection import CONNECTION_EVENT_TYPES
from infra.eventlog.projector import Projector
from infra.eventlog.reader import NotificationLogReader
from infra.eventstore import EVENTS_TABLE, store_mapper
from projections.engine import Projection
from services.ports import DbConnection, Notification

PAGE_SIZE = 500


class CountingProjection(Projection):
    name = "counting"
    tables = ("counted_events", "counted_total")
    schema = """
    CREATE TABLE IF NOT EXISTS counted_events (notification_id bigint PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS counted_total (one int PRIMARY KEY, events bigint NOT NULL);
    INSERT INTO counted_total VALUES (1, 0) ON CONFLICT DO NOTHING;
    """
    handles = (*CONNECTION_EVENT_TYPES, *BREAKER_EVENT_TYPES)
    pause_s = 0.0

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        await conn.executemany(
            "INSERT INTO counted_events VALUES ($1)", [(note.id,) for note in notes]
        )
        await conn.execute("UPDATE counted_total SET events = events + $1", len(notes))
        if self.pause_s:
            print(f"mid-page {notes[-1].id}", flush=True)
            await asyncio.sleep(self.pause_s)


async def main(database_url: str, cipher_key: str, pause_s: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    try:
        reader = NotificationLogReader(EVENTS_TABLE, store_mapper(cipher_key))
        counting = CountingProjection()
        counting.pause_s = pause_s
        projector = Projector(pool, reader, [counting], page_size=PAGE_SIZE)
        print("projecting", flush=True)
        await projector.run(stop)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0))

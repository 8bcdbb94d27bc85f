"""The projection engine: follow the notification log into read models, exactly once.

Each projection keeps its position in `syncyard_projection_position`, updated
in the same transaction as the rows a page of events changed. The position
row is locked FOR UPDATE first, so two projector processes never apply one
event twice: the second waits, then sees the advanced position.

The same `apply_page` serves live tailing (here), full replay, verification
and as-of rebuilds (`projections/rebuild.py`): those build the same tables in
another PostgreSQL schema, chosen per transaction with `SET LOCAL
search_path`, with that schema's own position table.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Iterable

import asyncpg

from events.base import DomainEvent
from projections.lag import projection_lag, record_live_lag, register_lag_gauge
from projections.schemas import (
    DEFAULT_EVENTS_TABLE,
    POSITIONS,
    Borrowed,
    checked_schema,
    use_schema,
)
from services.listening import listening
from services.notification_log import DbConnection, Notification, NotificationLogReader, topic_of
from services.waiting import wait_for_either

# Re-exported: callers find the whole engine here.
__all__ = [
    "DEFAULT_EVENTS_TABLE",
    "POSITIONS",
    "Projection",
    "Projector",
    "apply_next_page",
    "checked_schema",
    "migrate",
    "projection_lag",
    "register_lag_gauge",
    "use_schema",
]

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
POLL_INTERVAL_S = 1.0
LAG_EVERY_S = 1.0  # how often a projector refreshes its lag gauge

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {POSITIONS} (
    projection text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE {POSITIONS} ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;
"""
# Two processes creating the same tables at once can collide in the catalog.
_MIGRATION_LOCK = 0x5_7E_C7


class Projection(abc.ABC):
    """One read model: its schema, the events it reads, and how it applies them."""

    name: str
    schema: str
    handles: tuple[type[DomainEvent], ...]
    # The tables `schema` creates (unqualified: replay and as-of build them in
    # another schema through search_path), and the version of that DDL: a
    # projection whose version changed is rebuilt from zero.
    tables: tuple[str, ...] = ()
    version: int = 1

    @abc.abstractmethod
    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        """Apply a page of events (only those in `handles`, in log order) in one transaction.

        A page, not an event, is the unit so a projection can fold it in memory
        and write each row once: a round trip per event would cap the projector.
        """

    def topics(self) -> frozenset[str]:
        return frozenset(topic_of(cls) for cls in self.handles)


async def migrate(
    pool_or_conn: asyncpg.Pool | DbConnection,
    projections: Iterable[Projection],
    *,
    schema: str | None = None,
) -> list[str]:
    """Create the position table and each projection's tables in `schema` (None: the live ones).

    A projection whose stored version differs from its `version` has its
    `tables` dropped and recreated, and its position set back to zero: the
    projector then rebuilds it from the first event. Returns those names.
    """
    async with Borrowed(pool_or_conn) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        if schema is not None:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {checked_schema(schema)}")
        await use_schema(conn, schema)
        await conn.execute(SCHEMA)
        rebuilt = []
        for projection in projections:
            stored = await conn.fetchval(
                f"SELECT version FROM {POSITIONS} WHERE projection = $1 FOR UPDATE",  # noqa: S608
                projection.name,
            )
            if stored is not None and stored != projection.version:
                if not projection.tables:
                    raise RuntimeError(
                        f"projection {projection.name} changed version but declares no "
                        "`tables`: its old rows cannot be dropped, so it cannot be rebuilt"
                    )
                log.warning(
                    "projection %s: version %s stored, %s in code: rebuilding it from zero",
                    projection.name,
                    stored,
                    projection.version,
                )
                for table in projection.tables:
                    await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
                rebuilt.append(projection.name)
            await conn.execute(projection.schema)
            await conn.execute(
                f"INSERT INTO {POSITIONS} (projection, position, version) VALUES ($1, 0, $2) "  # noqa: S608
                "ON CONFLICT (projection) DO UPDATE SET position = 0, version = EXCLUDED.version, "
                f"updated_at = now() WHERE {POSITIONS}.version <> EXCLUDED.version",
                projection.name,
                projection.version,
            )
        return rebuilt


async def apply_next_page(
    conn: DbConnection,
    reader: NotificationLogReader,
    projection: Projection,
    *,
    page_size: int = PAGE_SIZE,
    schema: str | None = None,
    upto: int | None = None,
) -> int:
    """One page into one projection, with its position, in one transaction: events read."""
    async with conn.transaction():
        await use_schema(conn, schema)
        position = await conn.fetchval(
            f"SELECT position FROM {POSITIONS} WHERE projection = $1 FOR UPDATE",  # noqa: S608
            projection.name,
        )
        if position is None:
            raise LookupError(f"projection {projection.name} has no position: migrate it first")
        page = await reader.read(conn, int(position), page_size, projection.topics(), upto=upto)
        if page.last_id == position:
            return 0
        if page.notifications:
            await projection.apply_page(conn, page.notifications)
        await conn.execute(
            f"UPDATE {POSITIONS} SET position = $2, updated_at = now() "  # noqa: S608
            "WHERE projection = $1",
            projection.name,
            page.last_id,
        )
        return page.last_id - int(position)


class Projector:
    """Tails the log into the live read models: woken by NOTIFY, catching up by pages.

    Read models catch up side by side, each on its own connection and in its
    own transactions (their positions are independent), so an event's lag is
    that of the slowest read model rather than the sum of them all.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        reader: NotificationLogReader,
        projections: list[Projection],
        *,
        page_size: int = PAGE_SIZE,
        concurrency: int = 3,
    ) -> None:
        self.pool = pool
        self.reader = reader
        self.projections = projections
        self.page_size = page_size
        # Bounded: the pool also serves the relay, the followers and the API.
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._lag_measured_at = 0.0
        register_lag_gauge()

    async def catch_up_once(self, projection: Projection) -> int:
        """Apply one page to one projection; returns how many notifications it moved past."""
        async with self.pool.acquire() as conn:
            return await apply_next_page(conn, self.reader, projection, page_size=self.page_size)

    async def _catch_up_projection(self, projection: Projection) -> int:
        total = 0
        async with self._slots:
            while True:
                read = await self.catch_up_once(projection)
                total += read
                # Fewer ids than a page: the page was not full, nothing more is waiting.
                if read < self.page_size:
                    return total

    async def catch_up(self) -> int:
        """Apply everything stored so far to every projection."""
        # A TaskGroup, not gather: one read model failing stops the others before
        # the supervisor restarts the projector.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._catch_up_projection(p)) for p in self.projections]
        done = [task.result() for task in tasks]
        now = asyncio.get_running_loop().time()
        if now - self._lag_measured_at >= LAG_EVERY_S:
            self._lag_measured_at = now
            await self.measure_lag()
        return sum(done)

    async def measure_lag(self) -> None:
        """Refresh the lag gauge's values (the projector does so at most once a second)."""
        mine = {p.name for p in self.projections}
        rows = await projection_lag(self.pool, events_table=self.reader.table)
        record_live_lag({r["projection"]: r["behind"] for r in rows if r["projection"] in mine})

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await migrate(self.pool, self.projections)
        async with listening(self.pool, self.reader.channel, self._on_notify):
            while not stop.is_set():
                self._wake.clear()
                if await self.catch_up() == 0:
                    await wait_for_either(stop, self._wake, POLL_INTERVAL_S)

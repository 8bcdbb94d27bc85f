"""The projection engine: follow the notification log into read models, exactly once.

Each projection keeps its position in `syncyard_projection_position`, updated
in the same transaction as the rows a page of events changed. The position
row is locked FOR UPDATE first, so two projector processes never apply one
event twice: the second waits, then sees the advanced position.
"""

from __future__ import annotations

import abc
import asyncio
import logging

import asyncpg

from events.base import DomainEvent
from services.notification_log import DbConnection, Notification, NotificationLogReader, topic_of
from services.waiting import wait_for_either

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
POLL_INTERVAL_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_projection_position (
    projection text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


class Projection(abc.ABC):
    """One read model: its schema, the events it reads, and how it applies them."""

    name: str
    schema: str
    handles: tuple[type[DomainEvent], ...]

    @abc.abstractmethod
    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        """Apply a page of events (only those in `handles`, in log order) in one transaction.

        A page, not an event, is the unit so a projection can fold it in memory
        and write each row once: a round trip per event would cap the projector.
        """


async def migrate(pool: asyncpg.Pool, projections: list[Projection]) -> None:
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
        for projection in projections:
            await conn.execute(projection.schema)
            await conn.execute(
                "INSERT INTO syncyard_projection_position (projection, position) "
                "VALUES ($1, 0) ON CONFLICT DO NOTHING",
                projection.name,
            )


class Projector:
    def __init__(
        self,
        pool: asyncpg.Pool,
        reader: NotificationLogReader,
        projections: list[Projection],
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.pool = pool
        self.reader = reader
        self.projections = projections
        self.page_size = page_size
        self._wake = asyncio.Event()

    async def catch_up_once(self, projection: Projection) -> int:
        """Apply one page to one projection; returns how many events it read."""
        async with self.pool.acquire() as conn, conn.transaction():
            position = await conn.fetchval(
                "SELECT position FROM syncyard_projection_position "
                "WHERE projection = $1 FOR UPDATE",
                projection.name,
            )
            topics = {topic_of(cls) for cls in projection.handles}
            page = await self.reader.read(conn, int(position), self.page_size, topics)
            if page.last_id == position:
                return 0
            if page.notifications:
                await projection.apply_page(conn, page.notifications)
            await conn.execute(
                "UPDATE syncyard_projection_position SET position = $2, updated_at = now() "
                "WHERE projection = $1",
                projection.name,
                page.last_id,
            )
            return page.last_id - int(position)

    async def catch_up(self) -> int:
        """Apply everything stored so far to every projection."""
        total = 0
        for projection in self.projections:
            while read := await self.catch_up_once(projection):
                total += read
        return total

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await migrate(self.pool, self.projections)
        listener = await self.pool.acquire()
        await listener.add_listener(self.reader.channel, self._on_notify)
        try:
            while not stop.is_set():
                self._wake.clear()
                if await self.catch_up() == 0:
                    await wait_for_either(stop, self._wake, POLL_INTERVAL_S)
        finally:
            await listener.remove_listener(self.reader.channel, self._on_notify)
            await self.pool.release(listener)

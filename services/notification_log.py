"""Reading the event store's notification log directly, in pages, with asyncpg.

The relay and the projections both follow the log this way: it is the same
table the eventsourcing recorder writes (inserts serialised by its table lock,
so notification ids become visible in order and a reader never skips a gap).
"""

from __future__ import annotations

from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from eventsourcing.persistence import Mapper
from eventsourcing.utils import resolve_topic

from events.base import DomainEvent

# A plain connection or one borrowed from a pool: both run queries the same way.
DbConnection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    event: DomainEvent


def decode_stored(mapper: Mapper[Any], topic: str, state: bytes) -> DomainEvent:
    """Decrypt (when a cipher is configured) and decode one stored event."""
    if mapper.cipher:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor:
        state = mapper.compressor.decompress(state)
    cls: type[DomainEvent] = resolve_topic(topic)
    return msgspec.json.decode(state, type=cls)


class NotificationLogReader:
    def __init__(self, table: str, mapper: Mapper[Any]) -> None:
        self.table = table
        self.mapper = mapper
        # The table name is configuration, never input.
        self._select = (
            "SELECT notification_id, originator_id, originator_version, topic, state "  # noqa: S608
            f'FROM "{table}" WHERE notification_id > $1 ORDER BY notification_id LIMIT $2'
        )

    @property
    def channel(self) -> str:
        """The LISTEN channel the recorder NOTIFYs on each insert."""
        return self.table.replace(".", "_")

    async def read(self, conn: DbConnection, after: int, limit: int) -> list[Notification]:
        rows = await conn.fetch(self._select, after, limit)
        return [
            Notification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                event=decode_stored(self.mapper, row["topic"], row["state"]),
            )
            for row in rows
        ]

    async def max_id(self, conn: DbConnection) -> int:
        query = f'SELECT COALESCE(MAX(notification_id), 0) FROM "{self.table}"'  # noqa: S608 - our table
        value = await conn.fetchval(query)
        return int(value)

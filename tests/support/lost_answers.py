"""A database whose commit's answer is lost: the writes are in, the writer does not know."""

from __future__ import annotations

import asyncpg


class CommitsThenDrops:
    """The store's pool, whose next events insert commits and then loses its answer.

    `topic`: arm only for an insert that writes an event of that type (a part of
    its topic, e.g. `ProviderLinked`); any insert when None.
    """

    def __init__(self, pool: asyncpg.Pool, *, topic: str | None = None) -> None:
        self.pool = pool
        self.topic = topic
        self.armed = True

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        rows = await self.pool.fetch(sql, *args)
        if self.armed and "es_insert_events" in sql and self._writes_topic(args):
            self.armed = False
            raise asyncpg.ConnectionDoesNotExistError("connection lost after the commit")
        return rows

    def _writes_topic(self, args: tuple[object, ...]) -> bool:
        if self.topic is None:
            return True
        events = args[0] if args and isinstance(args[0], list) else []
        return any(self.topic in str(row[2]) for row in events)

    def __getattr__(self, name: str) -> object:
        return getattr(self.pool, name)

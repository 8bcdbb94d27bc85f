"""The feed as `feed.read` and a duplicate's answer read it: the `feed` read model."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg

from events.feed import FeedEntry
from projections.feed import last_position, read_feed
from services.ports import FeedReaderPort

# How long a read waits for the projector to hold what the connection recorded;
# past it, the answer is what the read model has (positions let the caller
# come back for the rest, so a short answer loses nothing).
CATCH_UP_WAIT_S = 5.0
_POLL_S = 0.02


class ProjectedFeedReader(FeedReaderPort):
    def __init__(self, pool: asyncpg.Pool, *, wait_s: float = CATCH_UP_WAIT_S) -> None:
        self.pool = pool
        self.wait_s = wait_s

    async def read(
        self, connection_id: UUID, *, since: int, limit: int, reached: int
    ) -> list[FeedEntry]:
        wanted = min(reached, since + limit)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.wait_s
        while True:
            # A connection per look, not one held across the wait: readers waiting
            # for the projector must not take the pool from everyone else.
            async with self.pool.acquire() as conn:
                try:
                    reached_now = await last_position(conn, connection_id)
                    if reached_now >= wanted or loop.time() >= give_up:
                        return await read_feed(conn, connection_id, since=since, limit=limit)
                except asyncpg.UndefinedTableError:
                    # Right after a first start the projector may not have made its
                    # tables yet: that is a read model behind, not a broken one.
                    if loop.time() >= give_up:
                        return []
            # The projector runs apart (NOTIFY would need a listener per read).
            await asyncio.sleep(_POLL_S)

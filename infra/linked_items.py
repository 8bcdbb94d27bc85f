"""`LinkedItemsPort` over the `linked_items` read model, waiting for it to catch up.

A webhook may come a moment after the link it names was recorded and before
the projector (which may run in another process) applied it. So when the
read model knows no connection for the item, the lookup waits, briefly, until
the read model has applied everything stored when the question was asked;
an item still unknown then is one syncyard does not hold.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg

from projections.linked_items import LinkedItemsProjection, connections_holding
from projections.schemas import POSITIONS
from services.ports import DbConnection, LinkedItemsPort

CATCH_UP_WAIT_S = 5.0
_POLL_S = 0.02


class ProjectedLinkedItems(LinkedItemsPort):
    def __init__(
        self, pool: asyncpg.Pool, events_table: str, *, wait_s: float = CATCH_UP_WAIT_S
    ) -> None:
        self.pool = pool
        self.events_table = events_table
        self.wait_s = wait_s

    async def connections_holding(self, provider: str, item_id: str) -> list[UUID]:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.wait_s
        head: int | None = None
        while True:
            # A connection per look: a webhook waiting for the projector must not
            # hold one of the API's few connections meanwhile.
            async with self.pool.acquire() as conn:
                try:
                    found, caught_up = await self._look(conn, provider, item_id, head)
                except asyncpg.UndefinedTableError:
                    # The projector has not created the read model yet (it is starting).
                    found, caught_up = [], False
                if found or caught_up or loop.time() >= give_up:
                    return found
                if head is None:
                    head = await self._head(conn)
            await asyncio.sleep(_POLL_S)

    async def _look(
        self, conn: DbConnection, provider: str, item_id: str, head: int | None
    ) -> tuple[list[UUID], bool]:
        """The connections found, and whether the read model held everything up to `head`."""
        found = await connections_holding(conn, provider, item_id)
        if found or head is None:
            return found, False
        position = await conn.fetchval(
            f"SELECT position FROM {POSITIONS} WHERE projection = $1",  # noqa: S608 - our table
            LinkedItemsProjection.name,
        )
        return found, position is not None and int(position) >= head

    async def _head(self, conn: DbConnection) -> int:
        """The last notification stored: what the read model must have applied."""
        query = f'SELECT COALESCE(MAX(notification_id), 0) FROM "{self.events_table}"'  # noqa: S608
        return int(await conn.fetchval(query))

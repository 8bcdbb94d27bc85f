"""Sends deferred syncs back to the work queue when they are due.

The due times are the `syncyard_deferrals` read model (`projections/deferrals.py`),
so a deferral survives any restart; `FOR UPDATE SKIP LOCKED` lets several
replicas share the work.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from nats.js import JetStreamContext

from events.subjects import HEADER_MSG_ID, command_subject
from infra.waiting import wait_for_stop

_DUE = """
SELECT command_id, op, command, tries FROM syncyard_deferrals
WHERE sent_at IS NULL AND resume_at <= now()
ORDER BY resume_at LIMIT $1
FOR UPDATE SKIP LOCKED
"""
_NEXT = "SELECT min(resume_at) - now() FROM syncyard_deferrals WHERE sent_at IS NULL"


class DeferralTimer:
    """Sends deferred commands back to the work queue when they are due."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        batch: int = 100,
        max_sleep_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.js = js
        self.batch = batch
        self.max_sleep_s = max_sleep_s

    async def fire_due(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                rows = await conn.fetch(_DUE, self.batch)
            except asyncpg.UndefinedTableError:
                return 0  # a fresh database: the projector has not created it yet
            # Published inside the transaction on purpose: a crash before the commit
            # leaves the rows unsent and they go again (NATS drops the repeat by id);
            # claiming first and publishing after could lose a deferral for good.
            for row in rows:
                # One message id per try: NATS drops a repeat of this try, not the next one.
                msg_id = f"{row['command_id']}:try{row['tries'] + 1}"
                await self.js.publish(
                    command_subject(row["op"]),
                    bytes(row["command"]),
                    headers={HEADER_MSG_ID: msg_id},
                )
            if rows:
                await conn.execute(
                    "UPDATE syncyard_deferrals SET sent_at = now() WHERE command_id = ANY($1)",
                    [row["command_id"] for row in rows],
                )
            return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self.fire_due() == self.batch:
                continue
            gap = None
            async with self.pool.acquire() as conn:
                with contextlib.suppress(asyncpg.UndefinedTableError):
                    gap = await conn.fetchval(_NEXT)
            sleep = self.max_sleep_s if gap is None else gap.total_seconds()
            await wait_for_stop(stop, max(0.05, min(self.max_sleep_s, sleep)))

"""Read model `syncyard_deferrals`: the durable timer behind deferred syncs.

Built from SyncDeferred events (and cleared by the command's end), so it is
rebuilt by replay like any read model; `DeferralTimer` sends each due command
again to JetStream. Because the rows live in PostgreSQL, a deferral survives
any restart, and `FOR UPDATE SKIP LOCKED` lets several replicas share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import msgspec
from nats.js import JetStreamContext

from events.connection import SyncCompleted, SyncDeferred, SyncFailed
from events.subjects import HEADER_MSG_ID, command_subject
from projections.engine import Projection
from services.notification_log import DbConnection, Notification
from services.waiting import wait_for_stop

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_deferrals (
    command_id text PRIMARY KEY,
    connection_id uuid NOT NULL,
    op text NOT NULL,
    command bytea NOT NULL,
    tries int NOT NULL,
    resume_at timestamptz NOT NULL,
    sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS syncyard_deferrals_due
    ON syncyard_deferrals (resume_at) WHERE sent_at IS NULL;
"""


class DeferralsProjection(Projection):
    name = "deferrals"
    schema = SCHEMA
    handles = (SyncDeferred, SyncCompleted, SyncFailed)

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        # Folded per command first: a page's last word on a command is all
        # that reaches the table, in two statements rather than one per event.
        latest: dict[str, SyncDeferred | None] = {}
        for note in notes:
            event = note.event
            if isinstance(event, SyncDeferred):
                known = latest.get(event.command_id)
                if known is None or known.tries < event.tries:
                    latest[event.command_id] = event
            elif isinstance(event, SyncCompleted | SyncFailed):
                latest[event.command_id] = None  # the command ended: nothing left to resend
        ended = [command_id for command_id, event in latest.items() if event is None]
        deferred = [event for event in latest.values() if event is not None]
        if ended:
            await conn.execute(
                "DELETE FROM syncyard_deferrals WHERE command_id = ANY($1::text[])", ended
            )
        if deferred:
            await conn.executemany(
                "INSERT INTO syncyard_deferrals VALUES ($1, $2, $3, $4, $5, $6, NULL) "
                "ON CONFLICT (command_id) DO UPDATE SET tries = EXCLUDED.tries, "
                "resume_at = EXCLUDED.resume_at, sent_at = NULL "
                "WHERE syncyard_deferrals.tries < EXCLUDED.tries",
                [
                    (
                        e.command_id,
                        e.originator_id,
                        e.op,
                        msgspec.json.encode(e.command),
                        e.tries,
                        e.resume_at,
                    )
                    for e in deferred
                ],
            )


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
        self.sent = 0

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
            self.sent += len(rows)
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

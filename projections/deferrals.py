"""Read model `syncyard_deferrals`: the durable timer behind deferred syncs.

Built from SyncDeferred events (and cleared by the command's end), so it is
rebuilt by replay like any read model; `infra/deferral_timer.py` sends each
due command again to JetStream. Because the rows live in PostgreSQL, a deferral survives
any restart, and `FOR UPDATE SKIP LOCKED` lets several replicas share the work.
"""

from __future__ import annotations

import logging

import msgspec

from events.connection import SyncCompleted, SyncDeferred, SyncFailed
from projections.engine import Projection
from services.ports import DbConnection, Notification

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

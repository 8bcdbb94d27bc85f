"""Read model `sync_log`: how each command against a connection ended.

One row per try of a command: `success` (SyncCompleted), `failure`
(SyncFailed), `deferred` (SyncDeferred: a provider failed it, to be tried
again) or `waited` (a refused SyncDeferred: a breaker, limit or bulkhead kept
it from calling anyone, so no try was spent and nothing failed), with the
provider that answered, whether failover was used, how many calls it took and
how long. Reliability statistics (reliability.py) are computed from it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from events.connection import SyncCompleted, SyncDeferred, SyncFailed
from projections.attempt_types import AttemptType, attempt_type
from projections.bulk import insert_new_rows
from projections.engine import Projection
from projections.row_types import Time
from services.ports import DbConnection, Notification

SyncOutcome = Literal["success", "failure", "deferred", "waited"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_log (
    notification_id bigint PRIMARY KEY,
    connection_id uuid NOT NULL,
    command_id text NOT NULL,
    op text NOT NULL,
    attempt_type text NOT NULL,
    provider text,
    outcome text NOT NULL,
    failover_used boolean NOT NULL,
    attempts int NOT NULL,
    duration_ms double precision,
    error_code text,
    error_message text,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_log_by_connection ON sync_log (connection_id, occurred_at);
CREATE INDEX IF NOT EXISTS sync_log_by_time ON sync_log (occurred_at);
"""


class SyncLogRow(msgspec.Struct, frozen=True, kw_only=True):
    """How one try of a command for the account ended; a deferral names no provider or time."""

    space_id: str
    account_id: str
    command_id: str
    op: str
    attempt_type: AttemptType
    provider: str | None
    outcome: SyncOutcome
    failover_used: bool
    attempts: int
    duration_ms: float | None
    error_code: str | None
    error_message: str | None
    occurred_at: Time


class SyncLogProjection(Projection):
    name = "sync_log"
    schema = SCHEMA
    tables = ("sync_log",)
    handles = (SyncCompleted, SyncFailed, SyncDeferred)
    version = 2  # 2: refused deferrals are `waited`, not `deferred`

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        rows = []
        row: tuple[str | None, str, bool, int, float | None, str | None, str | None]
        for note in notes:
            e = note.event
            if isinstance(e, SyncCompleted):
                row = (e.provider, "success", e.failover_used, e.attempts, e.response_time_ms,
                       None, None)  # fmt: skip
            elif isinstance(e, SyncFailed):
                row = (e.provider, "failure", e.failover_used, e.attempts, e.response_time_ms,
                       e.error.code, e.error.message)  # fmt: skip
            elif isinstance(e, SyncDeferred):
                # The deferral names no provider or duration: the calls are in connection_attempts.
                outcome = "waited" if e.refused else "deferred"
                row = (None, outcome, False, 0, None, e.error.code, e.error.message)
            else:
                continue
            rows.append(
                (note.id, e.originator_id, e.command_id, e.op, attempt_type(e.op), *row,
                 e.timestamp)
            )  # fmt: skip
        if rows:
            # The primary key makes a replayed event a no-op rather than a second row.
            await insert_new_rows(conn, "sync_log", rows, version=self.version)


async def sync_log(
    conn: DbConnection, account_id: str, space_id: str | None, limit: int
) -> list[SyncLogRow]:
    """The account's latest command outcomes, newest first."""
    rows = await conn.fetch(
        """
        SELECT c.space_id, c.account_id, s.command_id, s.op, s.attempt_type, s.provider,
               s.outcome, s.failover_used, s.attempts, s.duration_ms, s.error_code,
               s.error_message, s.occurred_at
        FROM sync_log s JOIN connection_accounts c USING (connection_id)
        WHERE c.account_id = $1 AND ($2::text IS NULL OR c.space_id = $2)
        ORDER BY s.notification_id DESC
        LIMIT $3
        """,
        account_id,
        space_id,
        limit,
    )
    return [SyncLogRow(**row) for row in rows]

"""Read model `connection_attempts`: every provider call made for a connection.

Each row is one call: provider, op and its attempt type (see attempt_types.py),
outcome (success / failure / timeout / cancelled), error, response time, and
whether it was a failover, from which provider. The history query adds the
provider a failed call failed over to (the next call of the same command).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from events.connection import AttemptOutcome, ConnectionAttempted, ConnectionRegistered
from projections.attempt_types import AttemptType, attempt_type
from projections.bulk import insert_new_rows
from projections.engine import Projection
from projections.row_types import Time
from services.ports import DbConnection, Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS connection_accounts (
    connection_id uuid PRIMARY KEY,
    space_id text NOT NULL,
    account_id text NOT NULL,
    institution_id text,
    region text NOT NULL
);
CREATE INDEX IF NOT EXISTS connection_accounts_by_account ON connection_accounts (account_id);
CREATE TABLE IF NOT EXISTS connection_attempts (
    notification_id bigint PRIMARY KEY,
    connection_id uuid NOT NULL,
    command_id text NOT NULL,
    op text NOT NULL,
    attempt_type text NOT NULL,
    provider text NOT NULL,
    region text NOT NULL,
    attempt int NOT NULL,
    failover boolean NOT NULL,
    failover_from text,
    outcome text NOT NULL,
    response_time_ms double precision NOT NULL,
    error_code text,
    error_message text,
    error_type text,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS connection_attempts_by_connection
    ON connection_attempts (connection_id, notification_id DESC);
CREATE INDEX IF NOT EXISTS connection_attempts_by_time ON connection_attempts (occurred_at);
"""

_EARLIER_ATTEMPTS = """
SELECT DISTINCT ON (command_id, attempt) command_id, attempt, provider
FROM connection_attempts WHERE connection_id = ANY($1::uuid[]) AND command_id = ANY($2::text[])
ORDER BY command_id, attempt, notification_id DESC
"""


class AttemptRow(msgspec.Struct, frozen=True, kw_only=True):
    """One provider call for the account: which provider, how it went, and any failover."""

    space_id: str
    account_id: str
    command_id: str
    op: str
    attempt_type: AttemptType
    provider: str
    region: str
    attempt: int
    failover: bool
    failover_from: str | None
    failover_to: Annotated[
        str | None, msgspec.Meta(description="the provider the next call of the command went to")
    ]
    status: AttemptOutcome
    outcome: Annotated[AttemptOutcome, msgspec.Meta(description="= status")]
    response_time_ms: float
    error_code: str | None
    error_message: str | None
    error_type: str | None
    occurred_at: Time


class ConnectionAttemptsProjection(Projection):
    name = "connection_attempts"
    schema = SCHEMA
    tables = ("connection_accounts", "connection_attempts")
    version = 2
    handles = (ConnectionRegistered, ConnectionAttempted)

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        registered = [
            (e.originator_id, e.space_id, e.account_id, e.institution_id, e.region)
            for e in (n.event for n in notes)
            if isinstance(e, ConnectionRegistered)
        ]
        attempts = [(n.id, e) for n in notes if isinstance(e := n.event, ConnectionAttempted)]
        previous = await _previous_calls_before(conn, attempts)
        rows = []
        for note_id, e in attempts:
            failover_from = previous.get((e.command_id, e.attempt - 1)) if e.failover else None
            previous[(e.command_id, e.attempt)] = e.provider
            rows.append(
                (
                    note_id, e.originator_id, e.command_id, e.op, attempt_type(e.op), e.provider,
                    e.region, e.attempt, e.failover, failover_from, e.outcome,
                    e.response_time_ms, e.error_code, e.error_message, e.error_type, e.timestamp,
                )
            )  # fmt: skip
        if registered:
            await conn.executemany(
                "INSERT INTO connection_accounts VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (connection_id) DO NOTHING",
                registered,
            )
        if rows:
            # The primary key makes a replayed event a no-op rather than a second row.
            await insert_new_rows(conn, "connection_attempts", rows, version=self.version)


async def _previous_calls_before(
    conn: DbConnection, attempts: list[tuple[int, ConnectionAttempted]]
) -> dict[tuple[str, int], str]:
    """The stored calls a failover call in this page follows, when the page does not hold them.

    Only a command cut in two by a page boundary needs a look-up, so this is
    nearly always no query at all.
    """
    in_page: set[tuple[str, int]] = set()
    missing: dict[str, UUID] = {}
    for _, e in attempts:
        if e.failover and e.attempt > 1 and (e.command_id, e.attempt - 1) not in in_page:
            missing[e.command_id] = e.originator_id
        in_page.add((e.command_id, e.attempt))
    if not missing:
        return {}
    rows = await conn.fetch(_EARLIER_ATTEMPTS, list(set(missing.values())), list(missing))
    return {(row["command_id"], row["attempt"]): row["provider"] for row in rows}


async def connection_history(
    conn: DbConnection, account_id: str, space_id: str | None, limit: int
) -> list[AttemptRow]:
    """The account's latest calls, newest first; `failover_to` names where a call failed over."""
    rows = await conn.fetch(
        """
        SELECT space_id, account_id, command_id, op, attempt_type, provider, region, attempt,
               failover, failover_from, failover_to, outcome AS status, outcome,
               response_time_ms, error_code, error_message, error_type, occurred_at
        FROM (
            SELECT c.space_id, c.account_id, a.*,
                   CASE WHEN lead(a.failover) OVER w AND lead(a.attempt) OVER w = a.attempt + 1
                        THEN lead(a.provider) OVER w END
                       AS failover_to
            FROM connection_attempts a JOIN connection_accounts c USING (connection_id)
            WHERE c.account_id = $1 AND ($2::text IS NULL OR c.space_id = $2)
            WINDOW w AS (PARTITION BY a.command_id, a.connection_id ORDER BY a.notification_id)
        ) t
        ORDER BY notification_id DESC
        LIMIT $3
        """,
        account_id,
        space_id,
        limit,
    )
    return [AttemptRow(**row) for row in rows]

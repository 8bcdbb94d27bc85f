"""Read model `connection_attempts`: every provider call made for a connection."""

from __future__ import annotations

from typing import Any

import asyncpg

from events.connection import ConnectionAttempted, ConnectionRegistered
from projections.engine import Projection
from services.notification_log import DbConnection, Notification

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
    provider text NOT NULL,
    region text NOT NULL,
    attempt int NOT NULL,
    failover boolean NOT NULL,
    outcome text NOT NULL,
    response_time_ms double precision NOT NULL,
    error_code text,
    error_message text,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS connection_attempts_by_connection
    ON connection_attempts (connection_id, notification_id DESC);
"""


class ConnectionAttemptsProjection(Projection):
    name = "connection_attempts"
    schema = SCHEMA
    handles = (ConnectionRegistered, ConnectionAttempted)

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        registered = [
            (e.originator_id, e.space_id, e.account_id, e.institution_id, e.region)
            for e in (n.event for n in notes)
            if isinstance(e, ConnectionRegistered)
        ]
        attempts = [
            (
                n.id,
                e.originator_id,
                e.command_id,
                e.op,
                e.provider,
                e.region,
                e.attempt,
                e.failover,
                e.outcome,
                e.response_time_ms,
                e.error_code,
                e.error_message,
                e.timestamp,
            )
            for n in notes
            if isinstance(e := n.event, ConnectionAttempted)
        ]
        if registered:
            await conn.executemany(
                "INSERT INTO connection_accounts VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (connection_id) DO NOTHING",
                registered,
            )
        if attempts:
            # The primary key makes a replayed event a no-op rather than a second row.
            await conn.executemany(
                "INSERT INTO connection_attempts VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
                "ON CONFLICT (notification_id) DO NOTHING",
                attempts,
            )


async def connection_history(
    pool: asyncpg.Pool, account_id: str, space_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """
        SELECT c.space_id, c.account_id, a.command_id, a.op, a.provider, a.region, a.attempt,
               a.failover, a.outcome, a.response_time_ms, a.error_code, a.error_message,
               a.occurred_at
        FROM connection_attempts a JOIN connection_accounts c USING (connection_id)
        WHERE c.account_id = $1 AND ($2::text IS NULL OR c.space_id = $2)
        ORDER BY a.notification_id DESC
        LIMIT $3
        """,
        account_id,
        space_id,
        limit,
    )
    return [dict(row) for row in rows]

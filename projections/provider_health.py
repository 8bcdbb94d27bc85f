"""Read model `provider_health`: calls, errors and speed per provider and region."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from events.connection import ConnectionAttempted, ProviderFailed
from projections.engine import Projection
from services.notification_log import DbConnection, Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS provider_health (
    provider text NOT NULL,
    region text NOT NULL,
    successes bigint NOT NULL DEFAULT 0,
    failures bigint NOT NULL DEFAULT 0,
    total_response_ms double precision NOT NULL DEFAULT 0,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error_code text,
    last_error_message text,
    last_error_type text,
    PRIMARY KEY (provider, region)
);
"""

_COUNT_ATTEMPT = """
INSERT INTO provider_health AS h (provider, region, successes, failures, total_response_ms,
                                  last_success_at, last_failure_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (provider, region) DO UPDATE SET
    successes = h.successes + EXCLUDED.successes,
    failures = h.failures + EXCLUDED.failures,
    total_response_ms = h.total_response_ms + EXCLUDED.total_response_ms,
    last_success_at = GREATEST(h.last_success_at, EXCLUDED.last_success_at),
    last_failure_at = GREATEST(h.last_failure_at, EXCLUDED.last_failure_at)
"""

_RECORD_ERROR = """
INSERT INTO provider_health AS h (provider, region, last_error_code, last_error_message,
                                  last_error_type)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (provider, region) DO UPDATE SET
    last_error_code = EXCLUDED.last_error_code,
    last_error_message = EXCLUDED.last_error_message,
    last_error_type = EXCLUDED.last_error_type
"""


class ProviderHealthProjection(Projection):
    name = "provider_health"
    schema = SCHEMA
    handles = (ConnectionAttempted, ProviderFailed)

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        counts: dict[tuple[str, str], _Counts] = {}
        errors: dict[tuple[str, str], ProviderFailed] = {}
        for note in notes:
            event = note.event
            if isinstance(event, ConnectionAttempted) and event.outcome != "cancelled":
                # A hedge's loser was cut short by us: not a sample of the provider.
                key = (event.provider, event.region)
                counts.setdefault(key, _Counts()).add(event)
            elif isinstance(event, ProviderFailed):
                errors[(event.provider, event.region)] = event  # the page's latest wins
        if counts:
            await conn.executemany(
                _COUNT_ATTEMPT,
                [
                    (provider, region, c.successes, c.failures, c.total_ms, c.last_ok, c.last_fail)
                    for (provider, region), c in counts.items()
                ],
            )
        if errors:
            await conn.executemany(
                _RECORD_ERROR,
                [
                    (e.provider, e.region, e.error.code, e.error.message, e.error.type)
                    for e in errors.values()
                ],
            )


class _Counts:
    """One page's attempts at one provider and region, folded before writing."""

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.total_ms = 0.0
        self.last_ok: datetime | None = None
        self.last_fail: datetime | None = None

    def add(self, event: ConnectionAttempted) -> None:
        self.total_ms += event.response_time_ms
        if event.outcome == "success":
            self.successes += 1
            self.last_ok = max(filter(None, (self.last_ok, event.timestamp)))
        else:
            self.failures += 1
            self.last_fail = max(filter(None, (self.last_fail, event.timestamp)))


async def provider_health(pool: asyncpg.Pool, region: str | None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """
        SELECT provider, region, successes, failures,
               CASE WHEN successes + failures = 0 THEN 0
                    ELSE failures::float / (successes + failures) END AS error_rate,
               CASE WHEN successes + failures = 0 THEN NULL
                    ELSE total_response_ms / (successes + failures) END AS avg_response_ms,
               last_success_at, last_failure_at, last_error_code, last_error_message,
               last_error_type
        FROM provider_health
        WHERE $1::text IS NULL OR region = $1
        ORDER BY region, provider
        """,
        region,
    )
    return [dict(row) for row in rows]

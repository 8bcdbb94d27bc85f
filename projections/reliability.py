"""Reliability statistics over a period, read from `sync_log` and `connection_attempts`.

Every figure covers events with `since <= occurred_at <= now` (both ends in,
as in the health windows); both bounds come from the caller, so a past
period answers the same way every time.
A "sync" here is any command try against a provider (link, registration or
data sync): `deferred` tries count as failed, since each one was a failure
the person could notice. A `waited` one (refused by an open breaker, a rate
limit or a full bulkhead) called nobody and spent no try: it is counted
apart, in `waited`, and in neither `total` nor `failed`, so an outage the
breakers keep people out of does not read as a run of failures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from projections.row_types import Rate, Time
from services.ports import DbConnection

_OUTCOMES = """
       count(outcome) FILTER (WHERE outcome <> 'waited') AS total,
       count(*) FILTER (WHERE outcome = 'success') AS successful,
       count(*) FILTER (WHERE outcome IN ('failure', 'deferred')) AS failed,
       count(*) FILTER (WHERE outcome = 'deferred') AS deferred,
       count(*) FILTER (WHERE outcome = 'waited') AS waited,
       avg(duration_ms) AS avg_duration_ms
"""


_NO_OUTCOMES: dict[str, Any] = {
    "total": 0, "successful": 0, "failed": 0, "deferred": 0, "waited": 0,
    "avg_duration_ms": None,
}  # fmt: skip


class ConnectionReliabilityRow(msgspec.Struct, frozen=True, kw_only=True):
    """One connection of the account over the period: its command tries and how they ended."""

    connection_id: UUID
    space_id: str
    account_id: str
    total: int
    successful: int
    failed: int
    deferred: int
    waited: int
    avg_duration_ms: float | None
    success_rate: Rate | None


class ProviderReliabilityRow(msgspec.Struct, frozen=True, kw_only=True):
    """One provider over the period: command tries it answered, calls made and their cost."""

    provider: str
    total: int
    successful: int
    failed: int
    deferred: int
    waited: int
    avg_duration_ms: float | None
    success_rate: Rate | None
    calls: int
    price_per_call: float | None
    estimated_cost: float


class FailoverHourRow(msgspec.Struct, frozen=True, kw_only=True):
    """One provider, region and hour: calls to it, and failovers away from it."""

    provider: str
    region: str
    hour: Time
    calls: int
    failovers: int
    failover_rate: Rate | None


def _success_rate(outcomes: Any) -> float | None:
    return outcomes["successful"] / outcomes["total"] if outcomes["total"] else None


async def connection_reliability(
    conn: DbConnection, account_id: str, space_id: str | None, since: datetime, now: datetime
) -> list[ConnectionReliabilityRow]:
    """Per connection of the account: totals, success rate and average duration."""
    rows = await conn.fetch(
        f"""
        SELECT c.connection_id, c.space_id, c.account_id, {_OUTCOMES}
        FROM connection_accounts c
        LEFT JOIN sync_log s ON s.connection_id = c.connection_id
             AND s.occurred_at >= $3 AND s.occurred_at <= $4
        WHERE c.account_id = $1 AND ($2::text IS NULL OR c.space_id = $2)
        GROUP BY c.connection_id, c.space_id, c.account_id
        ORDER BY c.space_id
        """,  # noqa: S608 - a constant fragment
        account_id,
        space_id,
        since,
        now,
    )
    return [ConnectionReliabilityRow(**row, success_rate=_success_rate(row)) for row in rows]


async def provider_reliability(
    conn: DbConnection, since: datetime, now: datetime, prices: dict[str, float]
) -> list[ProviderReliabilityRow]:
    """Per provider: command outcomes (sync_log), calls made and their estimated cost.

    Every call counts towards cost, failed, timed-out and hedged-away ones
    included: the provider did the work.
    """
    outcomes = {
        row["provider"]: row
        for row in await conn.fetch(
            f"SELECT provider, {_OUTCOMES} FROM sync_log "  # noqa: S608 - a constant fragment
            "WHERE provider IS NOT NULL AND occurred_at >= $1 AND occurred_at <= $2 "
            "GROUP BY provider",
            since,
            now,
        )
    }
    calls = {
        row["provider"]: row["calls"]
        for row in await conn.fetch(
            "SELECT provider, count(*) AS calls FROM connection_attempts "
            "WHERE occurred_at >= $1 AND occurred_at <= $2 GROUP BY provider",
            since,
            now,
        )
    }
    result = []
    for provider in sorted(outcomes.keys() | calls.keys()):
        row = outcomes.get(provider)
        stats = {k: row[k] for k in _NO_OUTCOMES} if row is not None else _NO_OUTCOMES
        n = calls.get(provider, 0)
        price = prices.get(provider)
        result.append(
            ProviderReliabilityRow(
                provider=provider,
                **stats,
                success_rate=_success_rate(stats),
                calls=n,
                price_per_call=price,
                estimated_cost=round(n * (price or 0.0), 6),
            )
        )
    return result


async def failover_rates(
    conn: DbConnection, since: datetime, now: datetime, region: str | None
) -> list[FailoverHourRow]:
    """Per provider, region and hour: calls, failovers away from it, and their ratio.

    A failover away from P is a failover call whose previous call (same
    command, attempt - 1) went to P; every one follows exactly one call to P,
    so the rate is at most 1. A primary skipped by its breaker made no call
    and is not counted.
    """
    rows = await conn.fetch(
        """
        WITH period AS (
            SELECT provider, failover_from, failover, region,
                   date_trunc('hour', occurred_at) AS hour
            FROM connection_attempts
            WHERE occurred_at >= $1 AND occurred_at <= $2 AND ($3::text IS NULL OR region = $3)
        ), counted AS (
            SELECT provider, region, hour, 1 AS call, 0 AS away FROM period
            UNION ALL
            SELECT failover_from, region, hour, 0, 1 FROM period
            WHERE failover AND failover_from IS NOT NULL
        )
        SELECT provider, region, hour, sum(call)::int AS calls, sum(away)::int AS failovers
        FROM counted GROUP BY provider, region, hour
        ORDER BY hour, region, provider
        """,
        since,
        now,
        region,
    )
    return [
        FailoverHourRow(
            **row, failover_rate=row["failovers"] / row["calls"] if row["calls"] else None
        )
        for row in rows
    ]

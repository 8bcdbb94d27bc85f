"""Whole-system figures: the metrics overview and each projection's lag."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from projections.lag import projection_lag as engine_projection_lag
from projections.row_types import Rate, Time
from services.ports import DbConnection

# The same order of precedence as connection_status.status_at: a connection is
# active only when nothing else (re-auth, maintenance, a wait, failures) applies.
_CONNECTIONS = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE cardinality(reauth_providers) = 0 AND NOT in_maintenance
                          AND NOT waiting AND consecutive_failures = 0
                          AND last_success_at IS NOT NULL) AS active,
       count(*) FILTER (WHERE consecutive_failures > 0) AS with_errors,
       count(*) FILTER (WHERE waiting) AS waiting,
       count(*) FILTER (WHERE in_maintenance) AS in_maintenance,
       count(*) FILTER (WHERE cardinality(reauth_providers) > 0) AS requiring_reauth
FROM (SELECT *, maintenance_provider IS NOT NULL
                AND (maintenance_until IS NULL OR maintenance_until > $1) AS in_maintenance,
             coalesce(waiting_until > $1, false) AS waiting
      FROM connection_status) c
"""

# A wait (a refused deferral) called nobody and spent no try: neither a try nor a failure.
_SYNCS = """
SELECT count(*) FILTER (WHERE outcome <> 'waited') AS total,
       count(*) FILTER (WHERE outcome = 'success') AS successful,
       count(*) FILTER (WHERE outcome IN ('failure', 'deferred')) AS failed,
       count(*) FILTER (WHERE outcome = 'waited') AS waited
FROM sync_log WHERE occurred_at >= $1 AND occurred_at <= $2
"""


class ConnectionCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Connections now: all of them, and how many are in each condition."""

    total: int
    active: int
    with_errors: int
    waiting: Annotated[
        int, msgspec.Meta(description="waiting for a breaker, limit or bulkhead to let them by")
    ] = 0
    in_maintenance: int
    requiring_reauth: int
    health_rate: Annotated[Rate | None, msgspec.Meta(description="active / total")]


class SyncCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Command tries in the period and how they ended (deferred ones count as failed).

    `waited` counts the refusals (a breaker open, a limit, a full bulkhead):
    no provider was called and no try spent, so they are not in `total`.
    """

    total: int
    successful: int
    failed: int
    success_rate: Rate | None
    waited: int = 0


class MetricsOverview(msgspec.Struct, frozen=True, kw_only=True):
    """Whole-system figures for the period from `since` to `until`."""

    since: Time
    until: Time
    connections: ConnectionCounts
    syncs: SyncCounts
    reliability_score: Annotated[
        Annotated[float, msgspec.Meta(ge=0, le=100)] | None,
        msgspec.Meta(description="0-100: 70% the sync success rate, 30% the health rate"),
    ]


class ProjectionLagRow(msgspec.Struct, frozen=True, kw_only=True):
    """One read model's position against the log's newest notification, and its age."""

    projection: str
    position: int
    log_position: int
    events_behind: int
    updated_at: Time
    age_s: float


def reliability_score(sync_success_rate: float | None, health_rate: float | None) -> float | None:
    """0-100: 70% the period's sync success rate, 30% the share of healthy connections.

    Syncs weigh more because they are what upstream feels; the health rate
    adds the connections that are stuck without failing (maintenance,
    re-authentication). With one of the two unknown, the other stands alone;
    with neither (no connections, no syncs), there is no score.
    """
    if sync_success_rate is None and health_rate is None:
        return None
    if sync_success_rate is None or health_rate is None:
        only = sync_success_rate if health_rate is None else health_rate
        assert only is not None
        return round(100.0 * only, 1)
    return round(100.0 * (0.7 * sync_success_rate + 0.3 * health_rate), 1)


async def metrics_overview(conn: DbConnection, since: datetime, now: datetime) -> MetricsOverview:
    connections = dict(await conn.fetchrow(_CONNECTIONS, now) or {})
    syncs = dict(await conn.fetchrow(_SYNCS, since, now) or {})
    health_rate = connections["active"] / connections["total"] if connections["total"] else None
    success_rate = syncs["successful"] / syncs["total"] if syncs["total"] else None
    return MetricsOverview(
        since=since,
        until=now,
        connections=ConnectionCounts(**connections, health_rate=health_rate),
        syncs=SyncCounts(**syncs, success_rate=success_rate),
        reliability_score=reliability_score(success_rate, health_rate),
    )


async def projection_lag(
    conn: DbConnection, events_table: str, now: datetime
) -> list[ProjectionLagRow]:
    """Each projection's position against the log's newest notification id, and its age.

    The engine's `projection_lag` in the API's words: `events_behind` counts
    notification ids, read or skipped alike; `age_s` is how long ago the
    projection last committed a page.
    """
    return [
        ProjectionLagRow(
            projection=row["projection"],
            position=row["position"],
            log_position=row["head"],
            events_behind=row["behind"],
            updated_at=row["updated_at"],
            age_s=(now - row["updated_at"]).total_seconds(),
        )
        for row in await engine_projection_lag(conn, events_table=events_table)
    ]

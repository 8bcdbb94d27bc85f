"""Reading `provider_health` at a moment: windows, p95, score and status.

Kept apart from the projection so the handler module stays about writing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from projections.health_rules import (
    HISTOGRAM_SIZE,
    WINDOW_5M,
    WINDOW_24H,
    BreakerState,
    HealthStatus,
    HealthThresholds,
    health_score,
    health_status,
    percentile_ms,
    window_start,
)
from projections.row_types import Rate, Time
from services.ports import DbConnection


class HealthWindow(msgspec.Struct, frozen=True, kw_only=True):
    """Calls in one window ending at the query moment; rates and times are null without calls."""

    successes: int
    failures: int
    success_rate: Rate | None
    error_rate: Rate | None
    avg_response_ms: float | None
    p95_response_ms: Annotated[
        float | None, msgspec.Meta(description="upper bound of the histogram bucket (<= 19% above)")
    ]


class BreakerView(msgspec.Struct, frozen=True, kw_only=True):
    """The provider's circuit breaker in this region, as its last event left it."""

    state: BreakerState
    since: Time | None
    open_until: Time | None
    reason: str | None


class ProviderHealthRow(msgspec.Struct, frozen=True, kw_only=True):
    """One provider in one region at the query moment: status, score, totals, windows, breaker.

    Running totals and last-* fields are as stored, whatever the query moment.
    """

    provider: str
    region: str
    status: HealthStatus
    health_score: Annotated[int, msgspec.Meta(ge=0, le=100)]
    successes: int
    failures: int
    timeouts: int
    error_rate: Rate
    avg_response_ms: float | None
    window_5m: HealthWindow
    window_24h: HealthWindow
    last_success_at: Time | None
    last_failure_at: Time | None
    last_error_at: Time | None
    last_error_code: str | None
    last_error_message: str | None
    last_error_type: str | None
    breaker: BreakerView


_TOTALS = """
SELECT provider, region, successes, failures, timeouts, total_response_ms,
       last_success_at, last_failure_at, last_error_at, last_error_code, last_error_message,
       last_error_type, breaker_state, breaker_since, breaker_open_until, breaker_reason
FROM provider_health
WHERE ($1::text IS NULL OR region = $1) AND ($2::text IS NULL OR provider = $2)
ORDER BY region, provider
"""

_WINDOWS = """
SELECT provider, region,
       sum(successes) FILTER (WHERE minute > $3) AS ok_5m,
       sum(failures) FILTER (WHERE minute > $3) AS failed_5m,
       sum(total_response_ms) FILTER (WHERE minute > $3) AS ms_5m,
       sum(successes) AS ok_24h, sum(failures) AS failed_24h, sum(total_response_ms) AS ms_24h
FROM provider_health_minutes
WHERE minute > $4 AND minute <= $5 AND ($1::text IS NULL OR region = $1)
      AND ($2::text IS NULL OR provider = $2)
GROUP BY provider, region
"""

_HISTOGRAMS = """
SELECT provider, region, u.i::int AS bucket,
       sum(u.n) FILTER (WHERE minute > $3) AS n_5m, sum(u.n) AS n_24h
FROM provider_health_minutes,
     unnest(latency_histogram) WITH ORDINALITY AS u(n, i)
WHERE minute > $4 AND minute <= $5 AND ($1::text IS NULL OR region = $1)
      AND ($2::text IS NULL OR provider = $2)
GROUP BY provider, region, u.i
"""


def _window(sums: Any, span: str, histogram: list[int] | None) -> HealthWindow:
    """One window's figures from its summed minute rows (None: no call in the window)."""
    ok = int(sums[f"ok_{span}"] or 0) if sums is not None else 0
    failed = int(sums[f"failed_{span}"] or 0) if sums is not None else 0
    total_ms = float(sums[f"ms_{span}"] or 0.0) if sums is not None else 0.0
    calls = ok + failed
    return HealthWindow(
        successes=ok,
        failures=failed,
        success_rate=ok / calls if calls else None,
        error_rate=failed / calls if calls else None,
        avg_response_ms=total_ms / calls if calls else None,
        p95_response_ms=percentile_ms(histogram or [], 0.95),
    )


async def provider_health(
    conn: DbConnection,
    *,
    now: datetime,
    thresholds: HealthThresholds,
    region: str | None = None,
    provider: str | None = None,
) -> list[ProviderHealthRow]:
    """Every provider and region (or those asked for) as seen at `now`.

    The score's base is the 24-hour success rate and its speed term the 24-hour
    average; the status judges the last 5 minutes (see health_rules.py).
    Running totals and last-* fields are as stored, whatever `now` says.
    """
    since_5m, since_24h = window_start(now, WINDOW_5M), window_start(now, WINDOW_24H)
    args = (region, provider, since_5m, since_24h, now)
    windows = {(r["provider"], r["region"]): r for r in await conn.fetch(_WINDOWS, *args)}
    histograms: dict[tuple[str, str, str], list[int]] = {}
    for row in await conn.fetch(_HISTOGRAMS, *args):
        for span in ("5m", "24h"):
            bins = histograms.setdefault(
                (row["provider"], row["region"], span), [0] * HISTOGRAM_SIZE
            )
            bins[row["bucket"] - 1] = int(row[f"n_{span}"] or 0)
    result: list[ProviderHealthRow] = []
    for row in await conn.fetch(_TOTALS, region, provider):
        key = (row["provider"], row["region"])
        w = windows.get(key)
        recent = _window(w, "5m", histograms.get((*key, "5m")))
        day = _window(w, "24h", histograms.get((*key, "24h")))
        calls = row["successes"] + row["failures"]
        breaker: BreakerState = row["breaker_state"]
        result.append(
            ProviderHealthRow(
                provider=row["provider"],
                region=row["region"],
                status=health_status(
                    breaker=breaker,
                    recent_calls=recent.successes + recent.failures,
                    recent_error_rate=recent.error_rate,
                    day_error_rate=day.error_rate,
                    recent_avg_ms=recent.avg_response_ms,
                    thresholds=thresholds,
                ),
                health_score=health_score(
                    day.success_rate, day.avg_response_ms, row["last_success_at"], now
                ),
                successes=row["successes"],
                failures=row["failures"],
                timeouts=row["timeouts"],
                error_rate=row["failures"] / calls if calls else 0.0,
                avg_response_ms=row["total_response_ms"] / calls if calls else None,
                window_5m=recent,
                window_24h=day,
                last_success_at=row["last_success_at"],
                last_failure_at=row["last_failure_at"],
                last_error_at=row["last_error_at"],
                last_error_code=row["last_error_code"],
                last_error_message=row["last_error_message"],
                last_error_type=row["last_error_type"],
                breaker=BreakerView(
                    state=breaker,
                    since=row["breaker_since"],
                    open_until=row["breaker_open_until"],
                    reason=row["breaker_reason"],
                ),
            )
        )
    return result

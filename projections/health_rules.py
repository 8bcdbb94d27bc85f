"""Pure rules behind `provider_health`: the latency histogram, the health score and status.

No I/O and no clock: every function takes the query moment (`now`) as an
argument, so the API (the current time) and an as-of query (a past time)
get their answers from the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

import msgspec

# One score, shared with the orchestrator's live view of provider health.
from services.resilience.live_health import health_score

__all__ = [
    "BUCKET",
    "BUCKETS_PER_DOUBLING",
    "HISTOGRAM_SIZE",
    "WINDOW_5M",
    "WINDOW_24H",
    "BreakerState",
    "HealthStatus",
    "HealthThresholds",
    "bucket_upper_ms",
    "health_score",
    "health_status",
    "latency_bucket",
    "percentile_ms",
    "window_start",
]

HealthStatus = Literal["healthy", "degraded", "down"]
BreakerState = Literal["closed", "open", "half_open"]

# Response times go into a fixed log-scale histogram: bucket i holds
# (2**((i-1)/4), 2**(i/4)] ms, four buckets per doubling, from 1 ms to about
# 2 minutes; the last bucket also takes anything slower. Summing histograms is
# exact, so a p95 over 5 minutes or 24 hours costs one small sum per bucket row,
# where stored samples would grow with traffic (86 million a day at 1,000 calls/s).
# The price: p95 is reported as its bucket's upper bound, never below the true
# value and at most 19% (2**0.25) above it, which is as exact as an alert needs.
BUCKETS_PER_DOUBLING = 4
HISTOGRAM_SIZE = 69  # 2**(68/4) ms = 131 s
WINDOW_5M = timedelta(minutes=5)
WINDOW_24H = timedelta(hours=24)
BUCKET = timedelta(minutes=1)


class HealthThresholds(msgspec.Struct, frozen=True, kw_only=True):
    """When a provider counts as degraded or down (configuration, see infra/config.py).

    The error rate is judged on the last 5 minutes once they hold `min_calls`
    calls, otherwise on the last 24 hours, so one failed call is not an outage.
    """

    degraded_error_rate: float = 0.10
    down_error_rate: float = 0.50
    slow_response_ms: float = 5000.0
    min_calls: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.degraded_error_rate <= self.down_error_rate <= 1:
            raise ValueError(
                "health thresholds: need 0 < degraded error rate <= down error rate <= 1, got "
                f"{self.degraded_error_rate} and {self.down_error_rate}"
            )
        if self.min_calls < 1 or self.slow_response_ms <= 0:
            raise ValueError("health thresholds: min calls must be >= 1 and slow ms > 0")


def latency_bucket(response_ms: float) -> int:
    """The histogram bucket a response time falls in."""
    if response_ms <= 1.0:
        return 0
    return min(HISTOGRAM_SIZE - 1, math.ceil(BUCKETS_PER_DOUBLING * math.log2(response_ms)))


def bucket_upper_ms(index: int) -> float:
    return float(2.0 ** (index / BUCKETS_PER_DOUBLING))


def percentile_ms(histogram: Sequence[int], fraction: float) -> float | None:
    """The upper bound of the bucket holding the `fraction` quantile; None when empty."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = math.ceil(fraction * total)  # nearest-rank: the smallest value with rank samples <= it
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return bucket_upper_ms(index)
    return bucket_upper_ms(len(histogram) - 1)  # unreachable when counts are consistent


def window_start(now: datetime, window: timedelta) -> datetime:
    """The oldest minute bucket a window ending at `now` includes.

    A bucket counts when it overlaps the window: no call of the last
    `window` is ever left out, and at most 59 s older ones come in with it.
    At a whole minute the window is exactly [now - window, now].
    """
    return now - window - BUCKET


def health_status(
    *,
    breaker: BreakerState,
    recent_calls: int,
    recent_error_rate: float | None,
    day_error_rate: float | None,
    recent_avg_ms: float | None,
    thresholds: HealthThresholds,
) -> HealthStatus:
    """down: breaker open or error rate at `down_error_rate`; degraded: half-open breaker,
    error rate at `degraded_error_rate` or average response above `slow_response_ms`.
    """
    if breaker == "open":
        return "down"
    error_rate = recent_error_rate if recent_calls >= thresholds.min_calls else day_error_rate
    if error_rate is not None and error_rate >= thresholds.down_error_rate:
        return "down"
    if breaker == "half_open":
        return "degraded"
    if error_rate is not None and error_rate >= thresholds.degraded_error_rate:
        return "degraded"
    if recent_avg_ms is not None and recent_avg_ms > thresholds.slow_response_ms:
        return "degraded"
    return "healthy"

"""Each provider's live health score, from every replica's calls as the log reports them.

The orchestrator orders a decision's providers by it (`services/failover.py`,
`rank_by_health`). It is fed by the breaker follower with the events the
breakers read (`ConnectionAttempted`, `Breaker*`), which every replica reads
in the same log order: two replicas that have read the same log give the
same scores, and the score a decision compared is recorded in its event, so
an auditor never has to recompute it. (The orchestrator's own
`LatencyTracker` would see only this replica's calls; the `provider_health`
read model lags behind a projector that may run elsewhere.)

The score is seed 003's (`health_score`, the one `GET /v1/providers/health`
shows over 24 hours), taken over the last `WINDOW`:

- the success rate of the calls that count against health (a caller's or a
  person's error says nothing of the provider: `default_blame`), judged only
  once the window holds `MIN_CALLS` of them (otherwise no judgement: 100);
- +10 when their average response is under 2 s, -10 over 5 s;
- +5 when the last success is under 1 h old, -10 when none was seen.

A breaker transition of the provider in the region clears its window: an
open breaker skips the provider anyway, and once it half-opens the provider
gets its probe in the directory's order instead of waiting for old failures
to age out of the window (a multi-homed connection would otherwise never
probe it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events.base import DomainEvent
from events.breaker import BreakerClosed, BreakerHalfOpened, BreakerOpened
from events.connection import ConnectionAttempted
from events.errors import ERROR_TYPES, ErrorType, default_blame

WINDOW = timedelta(minutes=15)
MIN_CALLS = 5
_MINUTE = timedelta(minutes=1)


def health_score(
    success_rate: float | None,
    avg_response_ms: float | None,
    last_success_at: datetime | None,
    now: datetime,
) -> int:
    """0-100: success rate in % (100 with no calls to judge), then

    +10 when the average response is under 2 s, -10 when over 5 s;
    +5 when the last success is under 1 h old, -10 when over 24 h old or
    there never was one; clamped to 0..100. The edges (exactly 2 s, 5 s,
    1 h, 24 h) earn neither bonus nor penalty.
    """
    score = 100.0 if success_rate is None else success_rate * 100.0
    if avg_response_ms is not None:
        if avg_response_ms < 2000.0:
            score += 10
        elif avg_response_ms > 5000.0:
            score -= 10
    if last_success_at is None:
        score -= 10
    else:
        age = now - last_success_at
        if age < timedelta(hours=1):
            score += 5
        elif age > timedelta(hours=24):
            score -= 10
    return int(max(0.0, min(100.0, round(score))))


def counts_against_health(event: ConnectionAttempted) -> bool:
    """Whether a finished call says anything about the provider's (or its bank's) health."""
    if event.outcome == "cancelled":
        return False  # a hedged call that lost the race
    if event.outcome == "success":
        return True
    if event.blame is not None:  # recorded with the error table's own word
        return event.blame in ("provider", "institution")
    named = "network" if event.outcome == "timeout" else event.error_type
    kind: ErrorType = next((t for t in ERROR_TYPES if t == named), "unknown")
    return default_blame(kind) in ("provider", "institution")


@dataclass
class _Minute:
    successes: int = 0
    failures: int = 0
    total_ms: float = 0.0


@dataclass
class _Provider:
    minutes: dict[datetime, _Minute] = field(default_factory=dict)
    last_success_at: datetime | None = None


class LiveHealth:
    """Per provider and region: the calls of the last `window`, by minute."""

    def __init__(self, *, window: timedelta = WINDOW, min_calls: int = MIN_CALLS) -> None:
        self.window = window
        self.min_calls = min_calls
        self._providers: dict[tuple[str, str], _Provider] = {}

    def observe(self, event: DomainEvent) -> None:
        """Take in one event from the log; others than calls and transitions are ignored."""
        if isinstance(event, (BreakerOpened, BreakerHalfOpened, BreakerClosed)):
            if event.institution_id is not None:
                return  # one bank's breaker at the provider says nothing of the whole
            known = self._providers.get((event.provider, event.region))
            if known is not None:
                known.minutes.clear()
            return
        if not isinstance(event, ConnectionAttempted) or not counts_against_health(event):
            return
        entry = self._providers.setdefault((event.provider, event.region), _Provider())
        minute = event.timestamp.replace(second=0, microsecond=0)
        bucket = entry.minutes.setdefault(minute, _Minute())
        if event.outcome == "success":
            bucket.successes += 1
            if entry.last_success_at is None or event.timestamp > entry.last_success_at:
                entry.last_success_at = event.timestamp
        else:
            bucket.failures += 1
        bucket.total_ms += event.response_time_ms
        # Minutes older than the window behind the newest one are never read again.
        oldest = minute - self.window - _MINUTE
        for stale in [m for m in entry.minutes if m < oldest]:
            del entry.minutes[stale]

    def score(self, provider: str, region: str, now: datetime) -> int:
        """The provider's score in the region at `now`, 0-100 (see the module's docstring)."""
        entry = self._providers.get((provider, region))
        if entry is None:
            return health_score(None, None, None, now)
        since = now - self.window - _MINUTE  # whole minutes overlapping the window
        ok = failed = 0
        total_ms = 0.0
        for minute, bucket in entry.minutes.items():
            if since < minute <= now:
                ok += bucket.successes
                failed += bucket.failures
                total_ms += bucket.total_ms
        calls = ok + failed
        rate = ok / calls if calls >= self.min_calls else None
        avg_ms = total_ms / calls if calls else None
        return health_score(rate, avg_ms, entry.last_success_at, now)

    def scores(self, providers: Iterable[str], region: str, now: datetime) -> dict[str, int]:
        return {provider: self.score(provider, region, now) for provider in providers}

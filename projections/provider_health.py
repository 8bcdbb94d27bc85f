"""Read model `provider_health`: calls, errors, speed and breaker state per provider and region.

Two tables: running totals, last error and breaker state per provider and
region, and one row per minute with counts and a latency histogram, from
which the query builds the 5-minute and 24-hour windows and their p95 at
query time (`now` is a parameter, never the clock: see health_rules.py).
A failure that is a person's, a caller's or syncyard's own (its `blame`) says
nothing of the provider's health and is left out of the counts; the last
error still shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events.breaker import (
    BreakerClosed,
    BreakerForced,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReleased,
)
from events.connection import ConnectionAttempted, ProviderFailed
from events.errors import ERROR_TYPES, default_blame
from projections.engine import Projection
from projections.health_rules import HISTOGRAM_SIZE, latency_bucket
from services.ports import DbConnection, Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS provider_health (
    provider text NOT NULL,
    region text NOT NULL,
    successes bigint NOT NULL DEFAULT 0,
    failures bigint NOT NULL DEFAULT 0,
    timeouts bigint NOT NULL DEFAULT 0,
    total_response_ms double precision NOT NULL DEFAULT 0,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error_event bigint,
    last_error_at timestamptz,
    last_error_code text,
    last_error_message text,
    last_error_type text,
    breaker_event bigint,
    breaker_state text NOT NULL DEFAULT 'closed',
    breaker_since timestamptz,
    breaker_open_until timestamptz,
    breaker_reason text,
    PRIMARY KEY (provider, region)
);
CREATE TABLE IF NOT EXISTS provider_health_minutes (
    provider text NOT NULL,
    region text NOT NULL,
    minute timestamptz NOT NULL,
    successes bigint NOT NULL,
    failures bigint NOT NULL,
    total_response_ms double precision NOT NULL,
    latency_histogram bigint[] NOT NULL,
    PRIMARY KEY (provider, region, minute)
);
CREATE INDEX IF NOT EXISTS provider_health_minutes_by_minute ON provider_health_minutes (minute);
"""

# Minute rows this much older than the newest one are never read again: the longest
# window is 24 h, and the margin covers clock skew. Measured from the newest stored
# minute, not a page's or the clock's, the rows kept are the same however the log
# was paged: live, replayed or rebuilt as of a past time.
KEEP_MINUTES = timedelta(hours=25)
_PRUNE = """
DELETE FROM provider_health_minutes
WHERE minute < (SELECT max(minute) FROM provider_health_minutes) - $1::interval
"""

_TOTALS = """
INSERT INTO provider_health AS h (provider, region, successes, failures, timeouts,
                                  total_response_ms, last_success_at, last_failure_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (provider, region) DO UPDATE SET
    successes = h.successes + EXCLUDED.successes,
    failures = h.failures + EXCLUDED.failures,
    timeouts = h.timeouts + EXCLUDED.timeouts,
    total_response_ms = h.total_response_ms + EXCLUDED.total_response_ms,
    last_success_at = GREATEST(h.last_success_at, EXCLUDED.last_success_at),
    last_failure_at = GREATEST(h.last_failure_at, EXCLUDED.last_failure_at)
"""

# Last error and breaker state carry the notification id that set them: a newer
# one wins, an older or repeated one changes nothing.
_ERROR = """
INSERT INTO provider_health AS h (provider, region, last_error_event, last_error_at,
                                  last_error_code, last_error_message, last_error_type)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (provider, region) DO UPDATE SET
    last_error_event = EXCLUDED.last_error_event,
    last_error_at = EXCLUDED.last_error_at,
    last_error_code = EXCLUDED.last_error_code,
    last_error_message = EXCLUDED.last_error_message,
    last_error_type = EXCLUDED.last_error_type
WHERE h.last_error_event IS NULL OR h.last_error_event < EXCLUDED.last_error_event
"""

_BREAKER = """
INSERT INTO provider_health AS h (provider, region, breaker_event, breaker_state,
                                  breaker_since, breaker_open_until, breaker_reason)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (provider, region) DO UPDATE SET
    breaker_event = EXCLUDED.breaker_event,
    breaker_state = EXCLUDED.breaker_state,
    breaker_since = EXCLUDED.breaker_since,
    breaker_open_until = EXCLUDED.breaker_open_until,
    breaker_reason = EXCLUDED.breaker_reason
WHERE h.breaker_event IS NULL OR h.breaker_event < EXCLUDED.breaker_event
"""

_MINUTES = """
INSERT INTO provider_health_minutes AS m
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (provider, region, minute) DO UPDATE SET
    successes = m.successes + EXCLUDED.successes,
    failures = m.failures + EXCLUDED.failures,
    total_response_ms = m.total_response_ms + EXCLUDED.total_response_ms,
    latency_histogram = ARRAY(
        SELECT a + b FROM unnest(m.latency_histogram, EXCLUDED.latency_histogram)
            WITH ORDINALITY AS t(a, b, i) ORDER BY i)
"""


class ProviderHealthProjection(Projection):
    name = "provider_health"
    schema = SCHEMA
    tables = ("provider_health", "provider_health_minutes")
    # 3: a failure that is not the provider's (nor its bank's) is not counted.
    version = 3
    # BreakerProbeAdmitted is left out: it does not change the breaker's state.
    # A row's breaker is the provider-wide one; a bank's is in `breakers.py`.
    handles = (
        ConnectionAttempted,
        ProviderFailed,
        BreakerOpened,
        BreakerHalfOpened,
        BreakerClosed,
        BreakerForced,
        BreakerReleased,
    )

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        fold = _PageFold()
        for note in notes:
            fold.add(note)
        if fold.totals:
            await conn.executemany(
                _TOTALS,
                [
                    (p, r, t.successes, t.failures, t.timeouts, t.total_ms, t.last_ok, t.last_fail)
                    for (p, r), t in fold.totals.items()
                ],
            )
            await conn.executemany(
                _MINUTES,
                [
                    (p, r, minute, m.successes, m.failures, m.total_ms, m.histogram)
                    for (p, r, minute), m in fold.minutes.items()
                ],
            )
            await conn.execute(_PRUNE, KEEP_MINUTES)
        if fold.errors:
            await conn.executemany(
                _ERROR,
                [
                    (e.provider, e.region, event_id, e.timestamp, e.error.code, e.error.message,
                     e.error.type)
                    for event_id, e in fold.errors.values()
                ],
            )  # fmt: skip
        if fold.breakers:
            await conn.executemany(_BREAKER, list(fold.breakers.values()))


@dataclass
class _Tally:
    successes: int = 0
    failures: int = 0
    timeouts: int = 0
    total_ms: float = 0.0
    last_ok: datetime | None = None
    last_fail: datetime | None = None
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_SIZE)

    def add(self, event: ConnectionAttempted) -> None:
        # Per event on replay (a million of them): plain comparisons, no max(filter()).
        self.total_ms += event.response_time_ms
        at = event.timestamp
        if event.outcome == "success":
            self.successes += 1
            if self.last_ok is None or at > self.last_ok:
                self.last_ok = at
        else:
            self.failures += 1
            self.timeouts += event.outcome == "timeout"
            if self.last_fail is None or at > self.last_fail:
                self.last_fail = at


def _says_anything(event: ConnectionAttempted) -> bool:
    """Whether a call tells of the provider's (or its banks') health: a success does;
    a failure only when it was theirs (events/errors.py `blame`; an event recorded
    before blame existed is judged by its error type)."""
    if event.outcome != "failure":
        return True  # a success, or a timeout (the provider did not answer in time)
    if event.blame is not None:
        return event.blame in ("provider", "institution")
    kind = event.error_type if event.error_type in ERROR_TYPES else "unknown"
    return default_blame(kind) in ("provider", "institution")


_BREAKER_EVENTS = (BreakerOpened, BreakerHalfOpened, BreakerClosed, BreakerForced, BreakerReleased)


class _PageFold:
    """One page folded in memory, so each row is written once per page."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], _Tally] = {}
        self.minutes: dict[tuple[str, str, datetime], _Tally] = {}
        self.errors: dict[tuple[str, str], tuple[int, ProviderFailed]] = {}
        self.breakers: dict[tuple[str, str], tuple[object, ...]] = {}

    def add(self, note: Notification) -> None:
        event = note.event
        if isinstance(event, ConnectionAttempted):
            if event.outcome == "cancelled":
                return  # a hedge's loser was cut short by us: not a sample of the provider
            if not _says_anything(event):
                return  # the person's, the caller's or our own failure: not the provider's health
            key = (event.provider, event.region)
            minute_key = (*key, event.timestamp.replace(second=0, microsecond=0))
            # get-then-create: setdefault would build a tally (and its histogram) per event.
            total = self.totals.get(key)
            if total is None:
                total = self.totals[key] = _Tally()
            total.add(event)
            tally = self.minutes.get(minute_key)
            if tally is None:
                tally = self.minutes[minute_key] = _Tally()
            tally.add(event)
            tally.histogram[latency_bucket(event.response_time_ms)] += 1
        elif isinstance(event, ProviderFailed):
            self.errors[(event.provider, event.region)] = (note.id, event)  # log order: last wins
        elif isinstance(event, _BREAKER_EVENTS) and event.institution_id is None:
            state, until, reason = "closed", None, None
            if isinstance(event, BreakerOpened):
                state, until, reason = "open", event.open_until, event.reason
            elif isinstance(event, BreakerHalfOpened):
                state = "half_open"
            elif isinstance(event, BreakerForced):
                state = "open" if event.state == "open" else "closed"
                until = event.until if event.state == "open" else None
                reason = f"held {event.state} by {event.actor} until {event.until:%H:%M:%S}Z: "
                reason += event.reason
            elif isinstance(event, BreakerReleased):
                reason = f"released by {event.actor}: {event.reason}"
            self.breakers[(event.provider, event.region)] = (
                event.provider,
                event.region,
                note.id,
                state,
                event.timestamp,
                until,
                reason,
            )

"""The `ProviderBreaker` aggregate and its sliding window: pure decisions, no I/O.

The aggregate's state comes from its own events (opened, half-opened, probes
admitted, closed). The window of recent calls comes from the notification log
(`ConnectionAttempted` events), which every replica reads in the same order,
so every replica reaches the same decision; the event store's version check
then lets exactly one of them record it.
"""

from __future__ import annotations

import uuid
from collections import deque
from datetime import datetime, timedelta
from functools import singledispatch
from typing import Literal

import msgspec

from events.base import DomainEvent
from events.breaker import (
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerProbeAdmitted,
    CountedCall,
)
from services.resilience.policy import BreakerPolicy

_NAMESPACE = uuid.UUID("0b6d3d1e-92a4-4b53-8d0c-3b1f5e0f7a10")
BreakerStatus = Literal["closed", "open", "half_open"]


def breaker_id_for(provider: str, region: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"breaker/{provider}/{region}")


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One finished provider call as the log reports it."""

    notification_id: int
    command_id: str
    at: datetime
    outcome: str
    error_type: str | None
    error_code: str | None
    response_time_ms: float

    def failed(self, policy: BreakerPolicy) -> bool:
        if self.outcome in ("success", "cancelled"):
            return False
        kind = "network" if self.outcome == "timeout" else (self.error_type or "unknown")
        return kind in policy.counted_errors

    def slow(self, policy: BreakerPolicy) -> bool:
        return policy.slow_call_ms is not None and self.response_time_ms >= policy.slow_call_ms

    def counted(self) -> CountedCall:
        return CountedCall(
            notification_id=self.notification_id,
            command_id=self.command_id,
            at=self.at,
            outcome=self.outcome,
            error_code=self.error_code,
            response_time_ms=self.response_time_ms,
        )


class Breaker(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    provider: str
    region: str
    version: int = 0
    status: BreakerStatus = "closed"
    open_until: datetime | None = None
    half_opened_at: datetime | None = None
    probes: tuple[str, ...] = ()  # command ids admitted as probes since half-opening
    probe_admitted_at: dict[str, datetime] = {}
    # Calls that finished before the last transition belong to the previous state.
    last_transition_at: datetime | None = None
    # When the probes last closed it: the ramp (ramp.py) counts from here.
    closed_at: datetime | None = None


def new_breaker(provider: str, region: str) -> Breaker:
    return Breaker(id=breaker_id_for(provider, region), provider=provider, region=region)


class Window:
    """Recent calls, pruned by time or count, with running failure and slow counts
    (a breaker sees every call: a recount per call would cost O(window));
    plus what probes reported since half-opening."""

    def __init__(self) -> None:
        self.calls: deque[tuple[Observation, bool, bool]] = deque()
        self.failures = 0
        self.slow = 0
        self.probe_results: dict[str, bool] = {}

    def reset(self) -> None:
        """A transition starts a fresh count: old failures must not re-trip a closed breaker."""
        self.calls.clear()
        self.failures = self.slow = 0
        self.probe_results.clear()

    def add(self, call: Observation, policy: BreakerPolicy, now: datetime) -> None:
        failed, slow = call.failed(policy), call.slow(policy)
        self.calls.append((call, failed, slow))
        self.failures += failed
        self.slow += slow
        self.prune(policy, now)

    def _drop_oldest(self) -> None:
        _, failed, slow = self.calls.popleft()
        self.failures -= failed
        self.slow -= slow

    def prune(self, policy: BreakerPolicy, now: datetime) -> None:
        if policy.window_kind == "count":
            while len(self.calls) > policy.window_calls:
                self._drop_oldest()
        else:
            horizon = now - timedelta(seconds=policy.window_s)
            while self.calls and self.calls[0][0].at < horizon:
                self._drop_oldest()

    def counted(self) -> list[CountedCall]:
        """The calls that count against the provider, for the BreakerOpened event."""
        return [call.counted() for call, failed, slow in self.calls if failed or slow]

    def trip_reason(self, policy: BreakerPolicy) -> str | None:
        """Why this window should open the breaker, or None."""
        total, failures = len(self.calls), self.failures
        if policy.failure_threshold is not None and failures >= policy.failure_threshold:
            return f"{failures} failures within the window (threshold {policy.failure_threshold})"
        if total >= policy.minimum_calls:
            if policy.failure_rate is not None and failures / total >= policy.failure_rate:
                return f"failure rate {failures / total:.0%} over {total} calls"
            if policy.slow_call_rate is not None and self.slow / total >= policy.slow_call_rate:
                return f"slow-call rate {self.slow / total:.0%} over {total} calls"
        return None


def _open(
    breaker: Breaker, reason: str, calls: list[CountedCall], policy: BreakerPolicy, now: datetime
) -> BreakerOpened:
    return BreakerOpened(
        originator_id=breaker.id,
        originator_version=breaker.version + 1,
        timestamp=now,
        provider=breaker.provider,
        region=breaker.region,
        reason=reason,
        open_until=now + timedelta(seconds=policy.open_timeout_s),
        calls=calls,
    )


def decide_on_call(
    breaker: Breaker, window: Window, call: Observation, policy: BreakerPolicy, now: datetime
) -> list[DomainEvent]:
    """Fold one finished call into the window; say whether the breaker must change."""
    if breaker.last_transition_at is not None and call.at < breaker.last_transition_at:
        return []
    if breaker.status == "closed":
        if call.outcome == "cancelled":
            return []  # a hedge's loser: neither a failure nor a sample of the provider
        return _while_closed(breaker, window, call, policy, now)
    if breaker.status == "half_open" and call.command_id in breaker.probes:
        return _probe_finished(breaker, window, call, policy, now)
    return []


def _while_closed(
    breaker: Breaker, window: Window, call: Observation, policy: BreakerPolicy, now: datetime
) -> list[DomainEvent]:
    window.add(call, policy, now)
    reason = window.trip_reason(policy)
    if reason is None:
        return []
    return [_open(breaker, reason, window.counted(), policy, now)]


def _probe_finished(
    breaker: Breaker, window: Window, call: Observation, policy: BreakerPolicy, now: datetime
) -> list[DomainEvent]:
    if call.command_id in window.probe_results:
        return []
    # A probe cancelled by a faster hedge did not show health: keep the breaker open.
    if call.failed(policy) or call.slow(policy) or call.outcome == "cancelled":
        window.probe_results[call.command_id] = False
        reason = f"probe {call.command_id} failed ({call.error_code or call.outcome})"
        return [_open(breaker, reason, [call.counted()], policy, now)]
    window.probe_results[call.command_id] = True
    successes = sum(window.probe_results.values())
    if successes < policy.successes_to_close:
        return []
    return [
        BreakerClosed(
            originator_id=breaker.id,
            originator_version=breaker.version + 1,
            timestamp=now,
            provider=breaker.provider,
            region=breaker.region,
            successes=successes,
        )
    ]


def decide_on_tick(breaker: Breaker, now: datetime) -> list[DomainEvent]:
    if breaker.status == "open" and breaker.open_until is not None and now >= breaker.open_until:
        return [
            BreakerHalfOpened(
                originator_id=breaker.id,
                originator_version=breaker.version + 1,
                timestamp=now,
                provider=breaker.provider,
                region=breaker.region,
            )
        ]
    return []


def probes_in_flight(breaker: Breaker, window: Window, policy: BreakerPolicy, now: datetime) -> int:
    """Probes admitted and not yet answered — forgetting any older than the probe
    timeout: a probe whose call never happened (rate-limited, bulkhead full,
    worker killed) must not hold the breaker half-open for ever."""
    expiry = timedelta(seconds=policy.probe_timeout_s)
    return sum(
        1
        for command_id in breaker.probes
        if command_id not in window.probe_results
        and now - breaker.probe_admitted_at.get(command_id, now) < expiry
    )


def decide_probe(
    breaker: Breaker, window: Window, command_id: str, policy: BreakerPolicy, now: datetime
) -> list[DomainEvent]:
    """Half-open lets `half_open_permitted_calls` probes through at a time."""
    if breaker.status != "half_open":
        return []
    if probes_in_flight(breaker, window, policy, now) >= policy.half_open_permitted_calls:
        return []
    return [
        BreakerProbeAdmitted(
            originator_id=breaker.id,
            originator_version=breaker.version + 1,
            timestamp=now,
            provider=breaker.provider,
            region=breaker.region,
            command_id=command_id,
        )
    ]


@singledispatch
def _apply(event: DomainEvent, breaker: Breaker) -> Breaker:
    return msgspec.structs.replace(breaker, version=event.originator_version)


@_apply.register
def _(event: BreakerOpened, breaker: Breaker) -> Breaker:
    return msgspec.structs.replace(
        breaker,
        version=event.originator_version,
        status="open",
        open_until=event.open_until,
        last_transition_at=event.timestamp,
        half_opened_at=None,
        probes=(),
        probe_admitted_at={},
    )


@_apply.register
def _(event: BreakerHalfOpened, breaker: Breaker) -> Breaker:
    return msgspec.structs.replace(
        breaker,
        version=event.originator_version,
        status="half_open",
        half_opened_at=event.timestamp,
        probes=(),
        probe_admitted_at={},
    )


@_apply.register
def _(event: BreakerProbeAdmitted, breaker: Breaker) -> Breaker:
    return msgspec.structs.replace(
        breaker,
        version=event.originator_version,
        probes=(*breaker.probes, event.command_id),
        probe_admitted_at={**breaker.probe_admitted_at, event.command_id: event.timestamp},
    )


@_apply.register
def _(event: BreakerClosed, breaker: Breaker) -> Breaker:
    return msgspec.structs.replace(
        breaker,
        version=event.originator_version,
        status="closed",
        open_until=None,
        probes=(),
        probe_admitted_at={},
        last_transition_at=event.timestamp,
        closed_at=event.timestamp,
    )


def evolve(breaker: Breaker, event: DomainEvent) -> Breaker:
    return _apply(event, breaker)

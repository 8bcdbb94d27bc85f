"""The breaker board: every breaker a replica knows, kept current from the event log.

The orchestrator asks `permit` before each provider call. The board learns of
calls and transitions from the notification log (`BreakerFollower`), decides
transitions with the pure functions in `domain.py`, and records them through
the event store's version check, so when several replicas race to make the
same transition exactly one of them records it.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from datetime import datetime

import msgspec

from events.base import DomainEvent
from events.breaker import (
    BREAKER_EVENT_TYPES,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
)
from events.connection import ConnectionAttempted
from services.resilience.domain import (
    Breaker,
    Observation,
    Window,
    decide_on_call,
    decide_on_tick,
    decide_probe,
    evolve,
    new_breaker,
)
from services.resilience.keyed_lock import KeyedLocks
from services.resilience.policy import PolicyBook
from services.resilience.ramp import ramp_share, ramp_wait_s

log = logging.getLogger(__name__)
_RESETS = (BreakerOpened, BreakerHalfOpened, BreakerClosed)


class BreakerRecorder(abc.ABC):
    """The event-store port the board writes through."""

    @abc.abstractmethod
    async def append(self, events: list[DomainEvent]) -> bool:
        """Record `events`; False when their versions are taken (another replica won)."""

    @abc.abstractmethod
    async def load(self, breaker: Breaker) -> list[DomainEvent]:
        """Every event of `breaker`'s stream so far."""


class Permit(msgspec.Struct, frozen=True, kw_only=True):
    allowed: bool
    probe: bool = False
    reason: str = ""
    retry_after_s: float | None = None  # when a refused call may be worth trying again


class _Entry:
    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker
        self.window = Window()
        self.last_reason = ""


class BreakerBoard:
    def __init__(
        self, recorder: BreakerRecorder, policies: PolicyBook, clock: Callable[[], datetime]
    ) -> None:
        self.recorder = recorder
        self.policies = policies
        self.clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._loading = KeyedLocks()
        self._admitting = KeyedLocks()

    def status(self, provider: str, region: str) -> str:
        entry = self._entries.get((provider, region))
        return entry.breaker.status if entry else "closed"

    def snapshot(self) -> dict[str, str]:
        return {f"{p}/{r}": e.breaker.status for (p, r), e in self._entries.items()}

    async def _entry(self, provider: str, region: str) -> _Entry:
        key = (provider, region)
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        async with self._loading.hold(key):
            entry = self._entries.get(key)
            if entry is None:
                breaker = new_breaker(provider, region)
                for event in await self.recorder.load(breaker):
                    breaker = evolve(breaker, event)
                entry = self._entries[key] = _Entry(breaker)
            return entry

    async def permit(self, provider: str, region: str, command_id: str) -> Permit:
        """May this command call `provider` in `region` now?"""
        entry = await self._entry(provider, region)
        await self._record(entry, decide_on_tick(entry.breaker, self.clock()))
        breaker = entry.breaker
        if breaker.status == "closed":
            return self._ramp(breaker.closed_at, provider, region, command_id)
        if breaker.status == "open":
            until = f"{breaker.open_until:%H:%M:%S}Z" if breaker.open_until else "later"
            wait = (
                (breaker.open_until - self.clock()).total_seconds() if breaker.open_until else None
            )
            return Permit(
                allowed=False,
                reason=f"breaker open until {until}: {entry.last_reason}",
                retry_after_s=wait,
            )
        policy = self.policies.for_(provider, region)
        # One admission at a time per breaker in this replica; across replicas
        # the event store's version check picks one winner.
        async with self._admitting.hold((provider, region)):
            admitted = decide_probe(entry.breaker, entry.window, command_id, policy, self.clock())
            if admitted and await self._record(entry, admitted):
                return Permit(allowed=True, probe=True)
        # The probe usually answers long before its timeout: come back after one
        # ramp interval and find the breaker closed (and ramping), open, or probing.
        return Permit(
            allowed=False,
            reason="breaker half-open: a probe is already in flight",
            retry_after_s=min(policy.probe_timeout_s, policy.ramp_interval_s),
        )

    def _ramp(
        self, closed_at: datetime | None, provider: str, region: str, command_id: str
    ) -> Permit:
        """A closed breaker lets everyone through, except on the ramp after its probes."""
        if closed_at is None:
            return Permit(allowed=True)
        policy = self.policies.for_(provider, region)
        now = self.clock()
        wait = ramp_wait_s(command_id, closed_at, now, policy)
        if wait is None:
            return Permit(allowed=True)
        share = ramp_share(closed_at, now, policy)
        return Permit(
            allowed=False,
            reason=f"breaker closed at {closed_at:%H:%M:%S}Z, ramping up: "
            f"{share:.0%} of commands let through now",
            retry_after_s=wait,
        )

    async def observe(self, event: DomainEvent) -> None:
        """Feed one event from the log: a finished call, or another replica's transition."""
        if isinstance(event, ConnectionAttempted):
            entry = await self._entry(event.provider, event.region)
            call = Observation(
                notification_id=0,
                command_id=event.command_id,
                at=event.timestamp,
                outcome=event.outcome,
                error_type=event.error_type,
                error_code=event.error_code,
                response_time_ms=event.response_time_ms,
            )
            policy = self.policies.for_(event.provider, event.region)
            await self._record(
                entry, decide_on_call(entry.breaker, entry.window, call, policy, self.clock())
            )
        elif isinstance(event, BREAKER_EVENT_TYPES):
            entry = await self._entry(event.provider, event.region)
            if event.originator_version > entry.breaker.version:
                self._apply(entry, event)

    async def tick(self) -> None:
        """Move breakers whose open timeout passed to half-open (a durable timer: the
        deadline is in the BreakerOpened event, so it survives restarts)."""
        now = self.clock()
        for entry in list(self._entries.values()):
            await self._record(entry, decide_on_tick(entry.breaker, now))

    def _apply(self, entry: _Entry, event: DomainEvent) -> None:
        entry.breaker = evolve(entry.breaker, event)
        if isinstance(event, _RESETS):
            entry.window.reset()
        if isinstance(event, BreakerOpened):
            entry.last_reason = event.reason

    async def _record(self, entry: _Entry, events: list[DomainEvent]) -> bool:
        if not events:
            return False
        if await self.recorder.append(events):
            for event in events:
                self._apply(entry, event)
            log.info(
                "breaker %s/%s: %s",
                entry.breaker.provider,
                entry.breaker.region,
                type(events[-1]).__name__,
            )
            return True
        # Another replica recorded a transition first: catch up with its stream.
        for event in await self.recorder.load(entry.breaker):
            if event.originator_version > entry.breaker.version:
                self._apply(entry, event)
        return False

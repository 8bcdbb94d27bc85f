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
from datetime import datetime, timedelta

import msgspec

from events.base import DomainEvent
from events.breaker import (
    BREAKER_EVENT_TYPES,
    BreakerClosed,
    BreakerForced,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReleased,
    ForcedState,
    ProviderStatusReport,
    StatusBlame,
)
from events.connection import ConnectionAttempted
from events.subjects import command_msg_id
from services.resilience.domain import (
    Breaker,
    decide_force,
    decide_on_call,
    decide_on_status,
    decide_on_tick,
    decide_probe,
    decide_release,
    evolve,
    new_breaker,
)
from services.resilience.keyed_lock import KeyedLocks
from services.resilience.policy import BreakerPolicy, PolicyBook
from services.resilience.ramp import ramp_share, ramp_wait_s
from services.resilience.window import Observation, Scope, Window

log = logging.getLogger(__name__)
_RESETS = (BreakerOpened, BreakerHalfOpened, BreakerClosed, BreakerForced, BreakerReleased)


# Syncs held by an operator ask again after a quarter of the time the hold has
# lasted: at least one open timeout (as behind a breaker its calls opened), at
# most 15 minutes. A release then reaches a held backlog within a quarter of the
# hold's age, and a long hold costs each held sync ~100 recorded deferrals a day
# (asked every minute, it cost ~1,440).
HELD_CHECK_BACK_SHARE = 0.25
HELD_CHECK_BACK_MAX_S = 900.0


def held_check_back_s(held_for_s: float, open_timeout_s: float) -> float:
    """How long a sync refused by a hold `held_for_s` old waits before asking again."""
    ceiling = max(HELD_CHECK_BACK_MAX_S, open_timeout_s)
    return min(max(open_timeout_s, held_for_s * HELD_CHECK_BACK_SHARE), ceiling)


class BreakerRecorder(abc.ABC):
    """The event-store port the board writes through."""

    @abc.abstractmethod
    async def append(self, events: list[DomainEvent]) -> bool:
        """Record `events`; False when their versions are taken (another replica won).

        A commit that went in but whose answer was lost is True: False never
        means "mine, recorded" (the hold would be answered as a duplicate).
        """

    @abc.abstractmethod
    async def load(self, breaker: Breaker) -> list[DomainEvent]:
        """Every event of `breaker`'s stream so far."""


class Permit(msgspec.Struct, frozen=True, kw_only=True):
    allowed: bool
    probe: bool = False
    reason: str = ""
    retry_after_s: float | None = None  # when a refused call may be worth trying again


class _Entry:
    def __init__(self, breaker: Breaker, policy: BreakerPolicy) -> None:
        self.breaker = breaker
        scope: Scope = "provider" if breaker.institution_id is None else "institution"
        self.window = Window(scope, spanning_institutions=policy.spanning_institutions)
        self.last_reason = ""


Key = tuple[str, str, str | None]  # provider, region, institution (None: provider-wide)


def call_key(space_id: str, command_id: str) -> str:
    """A command's name across spaces, as breakers know it: `demo/sync-1`.

    Its `Nats-Msg-Id` (the space percent-encoded, so two spaces' pairs never
    share one), readable in a breaker's audit ("probe demo/sync-1 failed").
    """
    return command_msg_id(space_id, command_id)


def _describe(key: Key) -> str:
    provider, region, institution = key
    return f"{provider}/{region}" + (f" at {institution}" if institution else "")


class BreakerBoard:
    """Every breaker this replica knows: per provider, region and institution, and the
    provider-wide one per provider and region that a call must also pass."""

    def __init__(
        self, recorder: BreakerRecorder, policies: PolicyBook, clock: Callable[[], datetime]
    ) -> None:
        self.recorder = recorder
        self.policies = policies
        self.clock = clock
        self._entries: dict[Key, _Entry] = {}
        # Each bank's breakers at every provider, by (region, institution): where
        # `permit` looks for the bank's own outage seen at another provider.
        self._banks: dict[tuple[str, str], dict[str, _Entry]] = {}
        self._loading = KeyedLocks()
        self._admitting = KeyedLocks()

    def status(self, provider: str, region: str, institution_id: str | None = None) -> str:
        entry = self._entries.get((provider, region, institution_id))
        return entry.breaker.status if entry else "closed"

    def breaker(self, provider: str, region: str, institution_id: str | None = None) -> Breaker:
        entry = self._entries.get((provider, region, institution_id))
        return entry.breaker if entry else new_breaker(provider, region, institution_id)

    def snapshot(self) -> dict[str, str]:
        return {
            "/".join(part for part in key if part): e.breaker.status
            for key, e in self._entries.items()
        }

    async def _entry(self, provider: str, region: str, institution_id: str | None = None) -> _Entry:
        key = (provider, region, institution_id)
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        async with self._loading.hold(key):
            entry = self._entries.get(key)
            if entry is None:
                breaker = new_breaker(provider, region, institution_id)
                for event in await self.recorder.load(breaker):
                    breaker = evolve(breaker, event)
                entry = _Entry(breaker, self.policies.for_(provider, region))
                if breaker.forced is not None:
                    entry.last_reason = (
                        f"held {breaker.forced} by {breaker.forced_by}: {breaker.forced_reason}"
                    )
                self._entries[key] = entry
                if institution_id is not None:
                    self._banks.setdefault((region, institution_id), {})[provider] = entry
            return entry

    async def permit(
        self,
        provider: str,
        region: str,
        call_key: str,
        institution_id: str | None = None,
        *,
        ramped: bool = True,
    ) -> Permit:
        """May this command call `provider` in `region` (for `institution_id`'s bank) now?

        Both breakers must let it through: the provider-wide one, and the one of
        the provider at that bank when the connection names its bank. `call_key`
        names the command across spaces (`call_key(space_id, command_id)`): it is
        the probe's name, matched against the calls the log reports, and the
        ramp's place, and command ids are unique only within a space.
        `ramped=False` (a person waits on the call): open breakers and probes
        still hold it back, the ramp after a breaker closes does not.
        """
        entries = [await self._entry(provider, region)]
        if institution_id is not None:
            entries.append(await self._entry(provider, region, institution_id))
        now = self.clock()
        for entry in entries:
            await self._record(entry, decide_on_tick(entry.breaker, now))
        for entry in entries:
            if entry.breaker.status == "open":
                return self._refusal(entry)
        if institution_id is not None and (down := self._bank_down_elsewhere(entries[-1])):
            return self._refusal(down, seen_for=provider)
        policy = self.policies.for_(provider, region)
        probe = False
        for entry in entries:
            if entry.breaker.status == "half_open":
                if not await self._admit_probe(entry, call_key):
                    # The probe usually answers long before its timeout: come back
                    # after one ramp interval and find the breaker closed (and
                    # ramping), open, or probing.
                    return Permit(
                        allowed=False,
                        reason=f"breaker {_describe(entry.breaker.key)} half-open: "
                        "a probe is already in flight",
                        retry_after_s=min(policy.probe_timeout_s, policy.ramp_interval_s),
                    )
                probe = True
        if probe:
            return Permit(allowed=True, probe=True)
        if not ramped:  # a person waits on it (a link being made): past the ramp
            return Permit(allowed=True)
        ramping = [self._ramp(entry.breaker, call_key) for entry in entries]
        held = [permit for permit in ramping if not permit.allowed]
        return max(held, key=lambda p: p.retry_after_s or 0.0) if held else Permit(allowed=True)

    def _ramp(self, breaker: Breaker, command_id: str) -> Permit:
        """A closed breaker lets everyone through, except on the ramp after its probes."""
        closed_at = breaker.closed_at
        if closed_at is None or breaker.forced == "closed":
            return Permit(allowed=True)
        policy = self.policies.for_(breaker.provider, breaker.region)
        now = self.clock()
        wait = ramp_wait_s(command_id, closed_at, now, policy)
        if wait is None:
            return Permit(allowed=True)
        share = ramp_share(closed_at, now, policy)
        return Permit(
            allowed=False,
            reason=f"breaker {_describe(breaker.key)} closed at {closed_at:%H:%M:%S}Z, "
            f"ramping up: {share:.0%} of commands let through now",
            retry_after_s=wait,
        )

    def _bank_down_elsewhere(self, mine: _Entry) -> _Entry | None:
        """The bank's breaker at another provider, open on the bank's own trouble.

        A bank that is down is down for every provider: failing over into the
        same outage spends a try and a paid call for an error. Only while that
        breaker is open: once it half-opens, this provider's own bank breaker
        judges its calls again, so a bank no longer called at the provider
        that saw the outage cannot hold syncs here beyond one open time.
        """
        breaker = mine.breaker
        assert breaker.institution_id is not None
        at_bank = self._banks.get((breaker.region, breaker.institution_id), {})
        now = self.clock()
        return next(
            (
                other
                for provider, other in sorted(at_bank.items())
                if provider != breaker.provider
                and other.breaker.status == "open"
                and other.breaker.bank_down
                and (other.breaker.open_until is None or other.breaker.open_until > now)
            ),
            None,
        )

    def _refusal(self, entry: _Entry, *, seen_for: str | None = None) -> Permit:
        breaker = entry.breaker
        until = f"{breaker.open_until:%H:%M:%S}Z" if breaker.open_until else "later"
        wait = (breaker.open_until - self.clock()).total_seconds() if breaker.open_until else None
        if breaker.forced == "open" and wait is not None:
            # An operator may release the hold long before it expires: the work it
            # holds asks again before the hold's planned end, so a release reaches
            # it soon (`held_check_back_s`).
            policy = self.policies.for_(breaker.provider, breaker.region)
            held_for = (
                (self.clock() - breaker.last_transition_at).total_seconds()
                if breaker.last_transition_at is not None
                else 0.0
            )
            wait = min(wait, held_check_back_s(held_for, policy.open_timeout_s))
        held = " (held by an operator)" if breaker.forced == "open" else ""
        where = f" at {breaker.institution_id}" if breaker.institution_id else ""
        if seen_for is not None:
            reason = (
                f"{breaker.institution_id} is down on its own side (its breaker at "
                f"{breaker.provider} open until {until}: {entry.last_reason}); waiting rather "
                f"than calling it through {seen_for}"
            )
            return Permit(allowed=False, reason=reason, retry_after_s=wait)
        return Permit(
            allowed=False,
            reason=f"breaker{where} open until {until}{held}: {entry.last_reason}",
            retry_after_s=wait,
        )

    async def _admit_probe(self, entry: _Entry, command_id: str) -> bool:
        breaker = entry.breaker
        policy = self.policies.for_(breaker.provider, breaker.region)
        # One admission at a time per breaker in this replica; across replicas
        # the event store's version check picks one winner.
        async with self._admitting.hold(breaker.key):
            admitted = decide_probe(entry.breaker, entry.window, command_id, policy, self.clock())
            return bool(admitted) and await self._record(entry, admitted)

    async def observe(self, event: DomainEvent) -> None:
        """Feed one event from the log: a finished call, or another replica's transition."""
        if isinstance(event, ConnectionAttempted):
            call = Observation(
                notification_id=0,
                # Recorded before attempts named their space: the bare id, as probes were then.
                command_id=(
                    event.command_id
                    if event.space_id is None
                    else call_key(event.space_id, event.command_id)
                ),
                at=event.timestamp,
                outcome=event.outcome,
                error_type=event.error_type,
                error_code=event.error_code,
                response_time_ms=event.response_time_ms,
                blame=event.blame,
                institution_id=event.institution_id,
            )
            policy = self.policies.for_(event.provider, event.region)
            keys: list[str | None] = [None]
            if event.institution_id is not None:
                keys.append(event.institution_id)
            for institution_id in keys:
                entry = await self._entry(event.provider, event.region, institution_id)
                await self._record(
                    entry, decide_on_call(entry.breaker, entry.window, call, policy, self.clock())
                )
        elif isinstance(event, BREAKER_EVENT_TYPES):
            entry = await self._entry(event.provider, event.region, event.institution_id)
            if event.originator_version > entry.breaker.version:
                self._apply(entry, event)

    async def force(
        self,
        provider: str,
        region: str,
        institution_id: str | None,
        *,
        state: ForcedState,
        duration_s: float,
        actor: str,
        reason: str,
        command_id: str,
        space_id: str | None = None,
    ) -> tuple[Breaker, bool]:
        """Hold a breaker open or closed for `duration_s` (an audited operator's decision).

        The breaker after it, and whether this call recorded the hold: not when the
        command (`space_id`, `command_id`) is recorded already, by this replica or another.
        """
        entry = await self._entry(provider, region, institution_id)
        now = self.clock()
        until = now + timedelta(seconds=duration_s)
        while True:
            events = decide_force(
                entry.breaker,
                state=state,
                until=until,
                actor=actor,
                reason=reason,
                command_id=command_id,
                space_id=space_id,
                now=now,
            )
            if not events:
                return entry.breaker, False
            if await self._record(entry, events):
                return entry.breaker, True

    async def release(
        self,
        provider: str,
        region: str,
        institution_id: str | None,
        *,
        actor: str,
        reason: str,
        command_id: str,
        space_id: str | None = None,
    ) -> tuple[Breaker, bool]:
        """End a hold, or close an open breaker with a fresh count; whether this call
        recorded it (not for a closed breaker, nor a command recorded already)."""
        entry = await self._entry(provider, region, institution_id)
        while True:
            events = decide_release(
                entry.breaker,
                actor=actor,
                reason=reason,
                command_id=command_id,
                space_id=space_id,
                now=self.clock(),
            )
            if not events:
                return entry.breaker, False
            if await self._record(entry, events):
                return entry.breaker, True

    async def provider_status(
        self,
        provider: str,
        region: str,
        institution_id: str,
        reports: list[ProviderStatusReport],
        blame: StatusBlame,
    ) -> bool:
        """What the provider publishes about the bank: True when it opened the breaker."""
        entry = await self._entry(provider, region, institution_id)
        policy = self.policies.for_(provider, region)
        await self._record(entry, decide_on_tick(entry.breaker, self.clock()))
        events = decide_on_status(entry.breaker, reports, blame, policy, self.clock())
        return await self._record(entry, events)

    async def tick(self) -> None:
        """Move breakers whose open timeout passed to half-open, and end expired holds
        (durable timers: the deadlines are in the events, so they survive restarts)."""
        now = self.clock()
        for entry in list(self._entries.values()):
            await self._record(entry, decide_on_tick(entry.breaker, now))

    def _apply(self, entry: _Entry, event: DomainEvent) -> None:
        entry.breaker = evolve(entry.breaker, event)
        if isinstance(event, _RESETS):
            entry.window.reset()
        if isinstance(event, BreakerOpened):
            entry.last_reason = event.reason
        elif isinstance(event, BreakerForced):
            entry.last_reason = f"held {event.state} by {event.actor}: {event.reason}"

    async def _record(self, entry: _Entry, events: list[DomainEvent]) -> bool:
        if not events:
            return False
        if await self.recorder.append(events):
            for event in events:
                self._apply(entry, event)
            log.info("breaker %s: %s", _describe(entry.breaker.key), type(events[-1]).__name__)
            return True
        # Another replica recorded a transition first: catch up with its stream.
        for event in await self.recorder.load(entry.breaker):
            if event.originator_version > entry.breaker.version:
                self._apply(entry, event)
        return False

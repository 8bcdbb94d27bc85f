"""The `ProviderBreaker` aggregate: pure decisions, no I/O.

One breaker per provider, region and institution, plus one per provider and
region (`institution_id` None) for the provider's own failures. The aggregate's
state comes from its own events (opened, half-opened, probes admitted, closed,
forced, released). The window of recent calls comes from the notification log
(`ConnectionAttempted` events), which every replica reads in the same order,
so every replica reaches the same decision; the event store's version check
then lets exactly one of them record it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import singledispatch
from typing import Literal

import msgspec

from events.base import DomainEvent
from events.breaker import (
    BreakerClosed,
    BreakerForced,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerProbeAdmitted,
    BreakerReleased,
    CountedCall,
    ForcedState,
    ProviderStatusReport,
    StatusBlame,
)
from events.subjects import command_key
from services.resilience.policy import BreakerPolicy
from services.resilience.window import Observation, Window

__all__ = ["Breaker", "Observation", "Window", "breaker_id_for", "new_breaker"]

_NAMESPACE = uuid.UUID("0b6d3d1e-92a4-4b53-8d0c-3b1f5e0f7a10")
# Operators' holds and releases remembered per breaker, to recognise one sent again.
OPERATOR_COMMANDS_KEPT = 64
BreakerStatus = Literal["closed", "open", "half_open"]


def breaker_id_for(provider: str, region: str, institution_id: str | None = None) -> uuid.UUID:
    """Deterministic: every replica (and an auditor) finds the same stream."""
    if institution_id is None:
        return uuid.uuid5(_NAMESPACE, f"breaker/{provider}/{region}")
    return uuid.uuid5(_NAMESPACE, f"breaker/{provider}/{region}/{institution_id}")


class Breaker(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    provider: str
    region: str
    institution_id: str | None = None
    version: int = 0
    status: BreakerStatus = "closed"
    open_until: datetime | None = None
    half_opened_at: datetime | None = None
    probes: tuple[str, ...] = ()  # command ids admitted as probes since half-opening
    probe_admitted_at: dict[str, datetime] = {}
    # Calls that finished before the last transition belong to the previous state.
    last_transition_at: datetime | None = None
    # When the probes last closed it, or a release let calls through again: the
    # ramp (ramp.py) counts from here.
    closed_at: datetime | None = None
    # An operator's hold: the state it is held in, until when, by whom and why.
    forced: ForcedState | None = None
    forced_until: datetime | None = None
    forced_by: str = ""
    forced_reason: str = ""
    forced_command: str | None = None
    # Opened on the bank's own trouble (a bank breaker's failed calls, all the
    # bank's by the window's rule, or the provider's status blaming the bank):
    # the same bank at other providers is likely down too (board.py).
    bank_down: bool = False
    # The holds and releases recorded (`command_key`), the latest last: one sent
    # again records nothing, so a resent release cannot end a later hold, nor a
    # resent hold replace one.
    operator_commands: tuple[str, ...] = ()

    def applied(self, space_id: str | None, command_id: str) -> bool:
        """Whether this operator's command (a hold or a release) is recorded already."""
        known = self.operator_commands
        # A bare id: recorded before holds named their space.
        return command_key(space_id, command_id) in known or command_id in known

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.provider, self.region, self.institution_id)

    def _names(self) -> dict[str, str | None]:
        return {
            "provider": self.provider,
            "region": self.region,
            "institution_id": self.institution_id,
        }


def new_breaker(provider: str, region: str, institution_id: str | None = None) -> Breaker:
    return Breaker(
        id=breaker_id_for(provider, region, institution_id),
        provider=provider,
        region=region,
        institution_id=institution_id,
    )


def _open(
    breaker: Breaker, reason: str, calls: list[CountedCall], policy: BreakerPolicy, now: datetime
) -> BreakerOpened:
    return BreakerOpened(
        originator_id=breaker.id,
        originator_version=breaker.version + 1,
        timestamp=now,
        reason=reason,
        open_until=now + timedelta(seconds=policy.open_timeout_s),
        calls=calls,
        **breaker._names(),  # type: ignore[arg-type]
    )


def decide_on_call(
    breaker: Breaker, window: Window, call: Observation, policy: BreakerPolicy, now: datetime
) -> list[DomainEvent]:
    """Fold one finished call into the window; say whether the breaker must change."""
    if breaker.forced is not None:
        return []  # an operator holds it: the calls change nothing until released
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
    # A probe that failed for another breaker's reason (the person's login, the
    # caller's cursor) says nothing of this one's: it neither closes nor reopens it.
    if call.outcome == "cancelled" or window.failed(call) or call.slow(policy):
        window.probe_results[call.command_id] = False
        reason = f"probe {call.command_id} failed ({call.error_code or call.outcome})"
        return [_open(breaker, reason, [call.counted()], policy, now)]
    if call.whose() is not None:
        window.probe_results[call.command_id] = False  # no verdict, but no longer in flight
        return []
    window.probe_results[call.command_id] = True
    successes = sum(window.probe_results.values())
    if successes < policy.successes_to_close:
        return []
    return [
        BreakerClosed(
            originator_id=breaker.id,
            originator_version=breaker.version + 1,
            timestamp=now,
            successes=successes,
            **breaker._names(),  # type: ignore[arg-type]
        )
    ]


def decide_on_tick(breaker: Breaker, now: datetime) -> list[DomainEvent]:
    """Time's transitions: an expired hold ends; an open timeout half-opens."""
    if breaker.forced is not None:
        if breaker.forced_until is not None and now >= breaker.forced_until:
            return [
                BreakerReleased(
                    originator_id=breaker.id,
                    originator_version=breaker.version + 1,
                    timestamp=now,
                    actor="syncyard",
                    reason=f"{breaker.forced_by}'s hold expired",
                    **breaker._names(),  # type: ignore[arg-type]
                )
            ]
        return []
    if breaker.status == "open" and breaker.open_until is not None and now >= breaker.open_until:
        return [
            BreakerHalfOpened(
                originator_id=breaker.id,
                originator_version=breaker.version + 1,
                timestamp=now,
                **breaker._names(),  # type: ignore[arg-type]
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
    if breaker.status != "half_open" or breaker.forced is not None:
        return []
    if probes_in_flight(breaker, window, policy, now) >= policy.half_open_permitted_calls:
        return []
    return [
        BreakerProbeAdmitted(
            originator_id=breaker.id,
            originator_version=breaker.version + 1,
            timestamp=now,
            command_id=command_id,
            **breaker._names(),  # type: ignore[arg-type]
        )
    ]


def decide_force(
    breaker: Breaker,
    *,
    state: ForcedState,
    until: datetime,
    actor: str,
    reason: str,
    command_id: str,
    space_id: str | None,
    now: datetime,
) -> list[DomainEvent]:
    """Hold the breaker open or closed until `until`; a resent command records nothing."""
    if breaker.applied(space_id, command_id):
        return []
    return [
        BreakerForced(
            originator_id=breaker.id,
            originator_version=breaker.version + 1,
            timestamp=now,
            state=state,
            actor=actor,
            reason=reason,
            until=until,
            command_id=command_id,
            space_id=space_id,
            **breaker._names(),  # type: ignore[arg-type]
        )
    ]


def decide_release(
    breaker: Breaker,
    *,
    actor: str,
    reason: str,
    command_id: str,
    space_id: str | None,
    now: datetime,
) -> list[DomainEvent]:
    """End a hold (or, as Polly's `Reset()`, close an open breaker); nothing when closed,
    nor for a release already recorded (resent after the breaker opened again).

    A release from open (held or not) starts the ramp (`ramp.py`), as the probes'
    close does: what waited behind the breaker comes back gradually."""
    if breaker.forced is None and breaker.status == "closed":
        return []
    if breaker.applied(space_id, command_id):
        return []
    return [
        BreakerReleased(
            originator_id=breaker.id,
            originator_version=breaker.version + 1,
            timestamp=now,
            actor=actor,
            reason=reason,
            command_id=command_id,
            space_id=space_id,
            **breaker._names(),  # type: ignore[arg-type]
        )
    ]


def decide_on_status(
    breaker: Breaker,
    reports: list[ProviderStatusReport],
    blame: StatusBlame,
    policy: BreakerPolicy,
    now: datetime,
) -> list[DomainEvent]:
    """The provider says a product is DOWN at this institution: open before calls fail.

    An open breaker stays as it is (its timeout runs); a half-open one re-opens:
    the provider still reports the product down, so a probe would only fail.
    """
    down = [r for r in reports if r.status == "DOWN"]
    if not down or breaker.forced is not None or breaker.status == "open":
        return []
    products = ", ".join(r.product for r in down)
    whose = "the provider's own errors" if blame == "provider" else "the institution's errors"
    return [
        msgspec.structs.replace(
            _open(
                breaker, f"{breaker.provider} reports {products} DOWN ({whose})", [], policy, now
            ),
            source="provider_status",
            blame=blame,
            status=reports,
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
        # Only an open from closed spreads to the bank at other providers: a failed
        # probe re-opening it would otherwise hold them round after round, while
        # this provider's own connector to the bank may be what is broken.
        bank_down=breaker.status == "closed"
        and event.institution_id is not None
        and (event.source == "calls" or event.blame == "institution"),
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
        bank_down=False,
    )


@_apply.register
def _(event: BreakerForced, breaker: Breaker) -> Breaker:
    return msgspec.structs.replace(
        breaker,
        version=event.originator_version,
        status="open" if event.state == "open" else "closed",
        open_until=event.until if event.state == "open" else None,
        half_opened_at=None,
        probes=(),
        probe_admitted_at={},
        last_transition_at=event.timestamp,
        forced=event.state,
        forced_until=event.until,
        forced_by=event.actor,
        forced_reason=event.reason,
        forced_command=event.command_id,
        operator_commands=_remember(breaker, event.space_id, event.command_id),
        bank_down=False,  # an operator's hold says nothing about the bank
    )


@_apply.register
def _(event: BreakerReleased, breaker: Breaker) -> Breaker:
    return msgspec.structs.replace(
        breaker,
        version=event.originator_version,
        operator_commands=_remember(breaker, event.space_id, event.command_id),
        status="closed",
        open_until=None,
        half_opened_at=None,
        probes=(),
        probe_admitted_at={},
        last_transition_at=event.timestamp,
        # A release that lets calls through again (a hold open, or an open or
        # half-open breaker reset) frees the work that waited: it comes back on
        # the same ramp as after the probes. Ending a hold closed frees nothing.
        closed_at=event.timestamp if breaker.status != "closed" else breaker.closed_at,
        forced=None,
        forced_until=None,
        forced_by="",
        forced_reason="",
        bank_down=False,
    )


def _remember(breaker: Breaker, space_id: str | None, command_id: str | None) -> tuple[str, ...]:
    if command_id is None:  # a hold's expiry, no command's
        return breaker.operator_commands
    key = command_key(space_id, command_id)
    return (*breaker.operator_commands, key)[-OPERATOR_COMMANDS_KEPT:]


def evolve(breaker: Breaker, event: DomainEvent) -> Breaker:
    return _apply(event, breaker)

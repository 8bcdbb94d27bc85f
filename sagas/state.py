"""A saga's state: a pure fold of its events. No I/O.

The saga id comes from the start command's id (`saga_id_for`), so sending
the same start command twice finds the saga already there and starts nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import singledispatch
from typing import Any, Literal

import msgspec

from events.base import DomainEvent
from events.errors import ErrorInfo
from events.saga import (
    LinkAborted,
    LinkCompleted,
    LinkCompletionReceived,
    SagaCompensating,
    SagaCompensationFailed,
    SagaCompensationStarted,
    SagaCompensationSucceeded,
    SagaNeedsAttention,
    SagaResumed,
    SagaStarted,
    SagaStepFailed,
    SagaStepStarted,
    SagaStepSucceeded,
    SagaTimerFired,
    SagaTimerSet,
)
from services.connections.state import pair_key

_NAMESPACE = uuid.UUID("0b7f4a52-3c1e-4f0a-9d7e-5a2b8c6e1f43")

SagaStatus = Literal["running", "compensating", "completed", "aborted", "needs_attention"]
TERMINAL: frozenset[str] = frozenset({"completed", "aborted", "needs_attention"})


def saga_id_for(space_id: str, command_id: str) -> uuid.UUID:
    # `pair_key`: a space or command id holding "/" must not share another's saga.
    return uuid.uuid5(_NAMESPACE, f"saga/{pair_key(space_id, command_id)}")


def public_token_stream_for(saga_id: uuid.UUID) -> uuid.UUID:
    """The private stream that keeps a link saga's public token."""
    return uuid.uuid5(_NAMESPACE, f"public-token/{saga_id}")


def idempotency_key_for(saga_id: uuid.UUID, name: str, *, compensation: bool = False) -> str:
    """One key per step (or compensation), the same for every attempt of it.

    Per step and not per attempt: an attempt that timed out after the
    provider acted is retried under the same key and gets the first answer
    back, where a new key would repeat the effect (or, for a public token
    exchanged already, fail and lose the link). Providers keep only
    successful answers, so a retry after a real failure really retries.
    """
    return f"{saga_id}:{'undo' if compensation else 'do'}:{name}"


class InFlight(msgspec.Struct, frozen=True, kw_only=True):
    """A step (or compensation) recorded as started and not yet finished."""

    name: str
    attempt: int
    key: str


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int
    error: ErrorInfo
    retryable: bool
    retry_at: datetime | None


class Compensating(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    step: str
    error: ErrorInfo | None


class SagaState(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    version: int
    kind: str
    command_id: str
    space_id: str
    account_id: str
    connection_id: uuid.UUID
    params: dict[str, Any]
    status: SagaStatus = "running"
    outputs: dict[str, dict[str, Any]] = {}  # completed steps, in completion order
    attempts: dict[str, int] = {}
    in_flight: InFlight | None = None
    failures: dict[str, Failure] = {}
    # Per step: attempts refused without a call (not counted against its tries),
    # and when the first refusal came (its waits are bounded from there).
    refusals: dict[str, int] = {}
    waiting_since: dict[str, datetime] = {}
    timers: dict[str, datetime] = {}
    fired: frozenset[str] = frozenset()
    completion_received: bool = False
    compensating: Compensating | None = None
    compensated: tuple[str, ...] = ()
    compensation_in_flight: InFlight | None = None
    compensation_attempts: dict[str, int] = {}
    compensation_failures: dict[str, Failure] = {}
    # Per compensation, its attempts when an operator last resumed it: the
    # retry budget counts from there.
    compensation_resumed_after: dict[str, int] = {}
    resumed_by: tuple[str, ...] = ()  # the `saga.resume` command ids applied
    attention: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def _bump(state: SagaState | None, event: DomainEvent, **changes: Any) -> SagaState:
    assert state is not None, f"{type(event).__name__} cannot start a saga"
    return msgspec.structs.replace(state, version=event.originator_version, **changes)


@singledispatch
def _apply(event: DomainEvent, state: SagaState | None) -> SagaState:
    return _bump(state, event)


@_apply.register
def _(event: SagaStarted, state: SagaState | None) -> SagaState:
    return SagaState(
        id=event.originator_id,
        version=event.originator_version,
        kind=event.kind,
        command_id=event.command_id,
        space_id=event.space_id,
        account_id=event.account_id,
        connection_id=event.connection_id,
        params=event.params,
    )


@_apply.register
def _(event: SagaStepStarted, state: SagaState | None) -> SagaState:
    assert state is not None
    flight = InFlight(name=event.step, attempt=event.attempt, key=event.idempotency_key)
    attempts = {**state.attempts, event.step: event.attempt}
    return _bump(state, event, in_flight=flight, attempts=attempts)


@_apply.register
def _(event: SagaStepSucceeded, state: SagaState | None) -> SagaState:
    assert state is not None
    outputs = {**state.outputs, event.step: event.output}
    return _bump(state, event, in_flight=None, outputs=outputs)


@_apply.register
def _(event: SagaStepFailed, state: SagaState | None) -> SagaState:
    assert state is not None
    failure = Failure(
        attempt=event.attempt, error=event.error, retryable=event.retryable, retry_at=event.retry_at
    )
    failures = {**state.failures, event.step: failure}
    if event.refused:
        refusals = {**state.refusals, event.step: state.refusals.get(event.step, 0) + 1}
        since = {event.step: event.timestamp, **state.waiting_since}
        return _bump(
            state, event, in_flight=None, failures=failures, refusals=refusals, waiting_since=since
        )
    return _bump(state, event, in_flight=None, failures=failures)


@_apply.register
def _(event: SagaTimerSet, state: SagaState | None) -> SagaState:
    assert state is not None
    return _bump(state, event, timers={**state.timers, event.timer: event.due_at})


@_apply.register
def _(event: SagaTimerFired, state: SagaState | None) -> SagaState:
    assert state is not None
    return _bump(state, event, fired=state.fired | {event.timer})


@_apply.register
def _(event: LinkCompletionReceived, state: SagaState | None) -> SagaState:
    return _bump(state, event, completion_received=True)


@_apply.register
def _(event: SagaCompensating, state: SagaState | None) -> SagaState:
    compensating = Compensating(reason=event.reason, step=event.step, error=event.error)
    return _bump(state, event, status="compensating", compensating=compensating, in_flight=None)


@_apply.register
def _(event: SagaCompensationStarted, state: SagaState | None) -> SagaState:
    assert state is not None
    flight = InFlight(name=event.compensation, attempt=event.attempt, key=event.idempotency_key)
    attempts = {**state.compensation_attempts, event.compensation: event.attempt}
    return _bump(state, event, compensation_in_flight=flight, compensation_attempts=attempts)


@_apply.register
def _(event: SagaCompensationSucceeded, state: SagaState | None) -> SagaState:
    assert state is not None
    done = (*state.compensated, event.compensation)
    return _bump(state, event, compensation_in_flight=None, compensated=done)


@_apply.register
def _(event: SagaCompensationFailed, state: SagaState | None) -> SagaState:
    assert state is not None
    failure = Failure(
        attempt=event.attempt, error=event.error, retryable=True, retry_at=event.retry_at
    )
    failures = {**state.compensation_failures, event.compensation: failure}
    return _bump(state, event, compensation_in_flight=None, compensation_failures=failures)


@_apply.register
def _(event: LinkCompleted, state: SagaState | None) -> SagaState:
    return _bump(state, event, status="completed")


@_apply.register
def _(event: LinkAborted, state: SagaState | None) -> SagaState:
    return _bump(state, event, status="aborted")


@_apply.register
def _(event: SagaNeedsAttention, state: SagaState | None) -> SagaState:
    return _bump(state, event, status="needs_attention", attention=event.reason)


@_apply.register
def _(event: SagaResumed, state: SagaState | None) -> SagaState:
    assert state is not None
    spent = state.compensation_attempts.get(event.compensation, 0)
    return _bump(
        state,
        event,
        status="compensating",
        attention=None,
        compensation_resumed_after={**state.compensation_resumed_after, event.compensation: spent},
        resumed_by=(*state.resumed_by, event.command_id),
    )


def evolve(state: SagaState | None, event: DomainEvent) -> SagaState:
    return _apply(event, state)


def fold(state: SagaState | None, events: Iterable[DomainEvent]) -> SagaState | None:
    for event in events:
        state = evolve(state, event)
    return state

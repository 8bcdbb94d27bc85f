"""What a saga does next: one pure function of its state and the time.

`decide(state, now)` answers one of
- `Record(events)`: a transition with no I/O (start a step, set or fire a
  timer, begin compensating, finish); the runner appends the events;
- `Execute(...)`: run a step or compensation (I/O) under its idempotency key;
  the key was recorded first, so after a crash the same key is used again;
- `Wait(until)`: nothing to do before `until` (a retry, a deadline);
- `Done()`: the saga ended (completed, aborted or needs attention).

Forward steps run in flow order; a step that fails retryably is tried again
after a backoff, up to its attempts; one that fails for good (or a deadline
that passes) turns the saga to compensating: the completed steps'
compensations run in reverse order of completion, each until it succeeds,
and a compensation that keeps failing ends the saga in `needs_attention`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from events.base import DomainEvent
from events.errors import ErrorInfo
from events.saga import (
    LinkAborted,
    LinkCompleted,
    SagaCompensating,
    SagaCompensationFailed,
    SagaCompensationStarted,
    SagaCompensationSucceeded,
    SagaNeedsAttention,
    SagaStepFailed,
    SagaStepStarted,
    SagaStepSucceeded,
    SagaTimerFired,
    SagaTimerSet,
)
from sagas.flows import DEFAULT_LINK_DEADLINE, FLOWS, Flow, StepSpec
from sagas.state import SagaState, idempotency_key_for

DEADLINE_PASSED = "deadline_passed"


class Record(msgspec.Struct, frozen=True):
    events: list[DomainEvent]


class Execute(msgspec.Struct, frozen=True, kw_only=True):
    what: Literal["step", "compensation"]
    name: str
    attempt: int
    key: str


class Wait(msgspec.Struct, frozen=True):
    until: datetime


class Done(msgspec.Struct, frozen=True):
    pass


Action = Record | Execute | Wait | Done


def pending_compensations(state: SagaState, flow: Flow) -> list[tuple[str, str]]:
    """(compensation, the step it undoes) still to run, in the order they run."""
    done = set(state.compensated)
    return [
        (name, step)
        for step in reversed(list(state.outputs))
        for name in flow.step(step).compensations
        if name not in done
    ]


def link_deadline(state: SagaState) -> timedelta:
    seconds = state.params.get("link_deadline_s")
    return timedelta(seconds=float(seconds)) if seconds else DEFAULT_LINK_DEADLINE


def decide(state: SagaState, now: datetime) -> Action:
    if state.finished:
        return Done()
    flow = FLOWS[state.kind]
    if state.compensating is not None:
        return _compensate(state, flow, now)
    if state.in_flight is not None:
        flight = state.in_flight
        return Execute(what="step", name=flight.name, attempt=flight.attempt, key=flight.key)
    return _forward(state, flow, now)


def _forward(state: SagaState, flow: Flow, now: datetime) -> Action:
    step = next((s for s in flow.steps if s.name not in state.outputs), None)
    if step is None:
        return Record([_finished(state, now)])
    if step.kind == "wait":
        return _wait_step(state, step, now)
    failure = state.failures.get(step.name)
    attempts = state.attempts.get(step.name, 0)
    if failure is not None and failure.attempt == attempts:
        spent = attempts - state.refusals.get(step.name, 0)  # a refusal spent no try
        if not failure.retryable or spent >= step.max_attempts:
            return Record([_compensating(state, now, failure.error.code, step.name, failure.error)])
        if failure.retry_at is not None and now < failure.retry_at:
            return Wait(failure.retry_at)
    attempt = attempts + 1
    key = idempotency_key_for(state.id, step.name)
    started = SagaStepStarted(
        **_envelope(state, now), step=step.name, attempt=attempt, idempotency_key=key
    )
    return Record([started])


def _wait_step(state: SagaState, step: StepSpec, now: datetime) -> Action:
    if state.completion_received:
        done = SagaStepSucceeded(**_envelope(state, now), step=step.name, attempt=1, output={})
        return Record([done])
    timer = step.timer or step.name
    due = state.timers.get(timer)
    if due is None:
        return Record(
            [SagaTimerSet(**_envelope(state, now), timer=timer, due_at=now + link_deadline(state))]
        )
    if now >= due:
        fired = SagaTimerFired(**_envelope(state, now), timer=timer)
        return Record(
            [fired, _compensating(state, now, DEADLINE_PASSED, step.name, None, offset=2)]
        )
    return Wait(due)


def _compensate(state: SagaState, flow: Flow, now: datetime) -> Action:
    if state.compensation_in_flight is not None:
        flight = state.compensation_in_flight
        return Execute(
            what="compensation", name=flight.name, attempt=flight.attempt, key=flight.key
        )
    pending = pending_compensations(state, flow)
    if not pending:
        return Record([_aborted(state, now)])
    name, step = pending[0]
    attempts = state.compensation_attempts.get(name, 0)
    failure = state.compensation_failures.get(name)
    if failure is not None and failure.attempt == attempts:
        if attempts - state.compensation_resumed_after.get(name, 0) >= flow.compensation_attempts:
            reason = (
                f"compensation {name} (undoing {step}) failed {attempts} times; last error "
                f"{failure.error.code}: {failure.error.message}"
            )
            return Record(
                [SagaNeedsAttention(**_envelope(state, now), reason=reason, compensation=name)]
            )
        if failure.retry_at is not None and now < failure.retry_at:
            return Wait(failure.retry_at)
    attempt = attempts + 1
    started = SagaCompensationStarted(
        **_envelope(state, now),
        compensation=name,
        for_step=step,
        attempt=attempt,
        idempotency_key=idempotency_key_for(state.id, name, compensation=True),
    )
    return Record([started])


def _envelope(state: SagaState, now: datetime, offset: int = 1) -> dict[str, Any]:
    return {
        "originator_id": state.id,
        "originator_version": state.version + offset,
        "timestamp": now,
        "metadata": {"command_id": state.command_id},
    }


def _compensating(
    state: SagaState,
    now: datetime,
    reason: str,
    step: str,
    error: ErrorInfo | None,
    *,
    offset: int = 1,
) -> SagaCompensating:
    return SagaCompensating(**_envelope(state, now, offset), reason=reason, step=step, error=error)


def _finished(state: SagaState, now: datetime) -> LinkCompleted:
    linked = state.outputs.get("exchange_token") or state.params
    created = state.outputs.get("create_link", {})
    return LinkCompleted(
        **_envelope(state, now),
        kind="reconnect" if state.kind == "reconnect" else "link",
        command_id=state.command_id,
        space_id=state.space_id,
        account_id=state.account_id,
        provider=str(linked.get("provider", "")),
        item_id=str(linked.get("item_id", "")),
        failover_used=bool(created.get("failover_used", False)),
        accounts=int(state.outputs.get("get_accounts", {}).get("accounts", 0)),
    )


def _aborted(state: SagaState, now: datetime) -> LinkAborted:
    assert state.compensating is not None
    return LinkAborted(
        **_envelope(state, now),
        kind="reconnect" if state.kind == "reconnect" else "link",
        command_id=state.command_id,
        space_id=state.space_id,
        account_id=state.account_id,
        reason=state.compensating.reason,
        step=state.compensating.step,
        error=state.compensating.error,
    )


def outcome_event(
    state: SagaState,
    action: Execute,
    now: datetime,
    *,
    output: dict[str, Any],
    error: ErrorInfo | None,
    wait_until: datetime | None = None,
) -> DomainEvent:
    """What an executed step or compensation records: success, or failure and when to retry.

    A step refused without a call (`wait_until`: when the refusal lifts) waits
    and keeps its tries, until its wait since the first refusal would pass the
    step's `max_wait` (the link deadline by default): then it fails for good.
    """
    flow = FLOWS[state.kind]
    envelope: dict[str, Any] = {
        "originator_id": state.id,
        "originator_version": state.version + 1,
        "timestamp": now,
        "metadata": {"command_id": state.command_id},
    }
    if action.what == "compensation":
        if error is None:
            return SagaCompensationSucceeded(
                **envelope, compensation=action.name, attempt=action.attempt
            )
        retry_at = now + flow.compensation_backoff.after(action.attempt)
        return SagaCompensationFailed(
            **envelope,
            compensation=action.name,
            attempt=action.attempt,
            error=error,
            retry_at=retry_at,
        )
    if error is None:
        return SagaStepSucceeded(
            **envelope, step=action.name, attempt=action.attempt, output=output
        )
    spec = flow.step(action.name)
    if wait_until is not None and error.retryable:
        since = state.waiting_since.get(action.name, now)
        if wait_until - since <= (spec.max_wait or link_deadline(state)):
            return SagaStepFailed(
                **envelope, step=action.name, attempt=action.attempt, error=error,
                retryable=True, retry_at=wait_until, refused=True,
            )  # fmt: skip
        error = msgspec.structs.replace(
            error, message=f"refused for longer than the step may wait; {error.message}",
            retryable=False,
        )  # fmt: skip
    spent = action.attempt - state.refusals.get(action.name, 0)
    retryable = error.retryable and spent < spec.max_attempts
    return SagaStepFailed(
        **envelope,
        step=action.name,
        attempt=action.attempt,
        error=error,
        retryable=error.retryable,
        retry_at=now + flow.step_backoff.after(action.attempt) if retryable else None,
    )

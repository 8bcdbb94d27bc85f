"""A saga as people read it: steps with their attempts, timers, compensations, the end.

Built straight from the saga's events (no read model to lag), as plain JSON
for `GET /v1/sagas/{id}` and as text for `syncyard audit saga ID`.

The view is for auditors and dashboards, so it names no token: a live link
token (or MX's widget URL, which is one) would let whoever reads it finish
someone else's link. `GET /v1/sagas/{id}/link` hands it to an operator instead.
"""

from __future__ import annotations

from typing import Any

import msgspec

from events.base import DomainEvent
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
from sagas.state import fold

# Keys whose values open or finish a provider link; dropped wherever they appear.
SECRET_KEYS = frozenset({"link_token", "widget_url", "public_token", "access_token"})


def without_secrets(value: Any) -> Any:
    """`value` with every `SECRET_KEYS` entry dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if k not in SECRET_KEYS}
    if isinstance(value, list | tuple):
        return [without_secrets(v) for v in value]
    return value


def _at(event: DomainEvent) -> str:
    return event.timestamp.isoformat()


def _attempt(
    rows: dict[tuple[str, int], dict[str, Any]],
    order: list[dict[str, Any]],
    name: str,
    attempt: int,
) -> dict[str, Any]:
    key = (name, attempt)
    if key not in rows:
        entry = next((e for e in order if e["name"] == name), None)
        if entry is None:
            entry = {"name": name, "attempts": []}
            order.append(entry)
        rows[key] = {"attempt": attempt, "outcome": "in_flight"}
        entry["attempts"].append(rows[key])
    return rows[key]


def saga_view(events: list[DomainEvent], schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    state = fold(None, events)
    if state is None:
        raise KeyError("no such saga")
    steps: list[dict[str, Any]] = []
    comps: list[dict[str, Any]] = []
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    comp_rows: dict[tuple[str, int], dict[str, Any]] = {}
    timers: dict[str, dict[str, Any]] = {}
    view: dict[str, Any] = {
        "saga_id": str(state.id),
        "kind": state.kind,
        "status": state.status,
        "command_id": state.command_id,
        "space_id": state.space_id,
        "account_id": state.account_id,
        "connection_id": str(state.connection_id),
        "params": state.params,
        "steps": steps,
        "timers": timers,
        "completion": None,
        "compensating": None,
        "compensations": comps,
        "result": None,
        "resumed": [],
        "attention": state.attention,
        "version": state.version,
    }
    for event in events:
        if not _attempt_event(event, rows, steps, comp_rows, comps):
            _flow_event(event, view, timers)
    if schedule is not None:
        view["schedule"] = {
            k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in schedule.items()
        }
    # Over the whole view, not only the step outputs: a token a step, a result or a
    # parameter might carry one day is dropped without anyone remembering to.
    cleaned: dict[str, Any] = without_secrets(view)
    return cleaned


def _attempt_event(
    event: DomainEvent,
    rows: dict[tuple[str, int], dict[str, Any]],
    steps: list[dict[str, Any]],
    comp_rows: dict[tuple[str, int], dict[str, Any]],
    comps: list[dict[str, Any]],
) -> bool:
    """Fold a step's or compensation's event into its attempt row; False for other events."""
    if isinstance(event, SagaStepStarted):
        row = _attempt(rows, steps, event.step, event.attempt)
        row.update(started_at=_at(event), idempotency_key=event.idempotency_key)
    elif isinstance(event, SagaStepSucceeded):
        row = _attempt(rows, steps, event.step, event.attempt)
        row.update(outcome="succeeded", finished_at=_at(event), output=event.output)
    elif isinstance(event, SagaCompensationStarted):
        row = _attempt(comp_rows, comps, event.compensation, event.attempt)
        row.update(
            started_at=_at(event), idempotency_key=event.idempotency_key, undoes=event.for_step
        )
    elif isinstance(event, SagaCompensationSucceeded):
        row = _attempt(comp_rows, comps, event.compensation, event.attempt)
        row.update(outcome="succeeded", finished_at=_at(event))
    elif isinstance(event, SagaStepFailed | SagaCompensationFailed):
        if isinstance(event, SagaStepFailed):
            row = _attempt(rows, steps, event.step, event.attempt)
        else:
            row = _attempt(comp_rows, comps, event.compensation, event.attempt)
        refused = isinstance(event, SagaStepFailed) and event.refused
        row.update(
            # Refused without a call: the step waited, it did not fail.
            outcome="waited" if refused else "failed",
            finished_at=_at(event),
            error=msgspec.to_builtins(event.error),
            retry_at=event.retry_at.isoformat() if event.retry_at else None,
        )
    else:
        return False
    return True


def _flow_event(event: DomainEvent, view: dict[str, Any], timers: dict[str, Any]) -> None:
    if isinstance(event, SagaStarted):
        view["started_at"] = _at(event)
    elif isinstance(event, SagaTimerSet):
        timers[event.timer] = {"due_at": event.due_at.isoformat(), "fired_at": None}
    elif isinstance(event, SagaTimerFired):
        timers.setdefault(event.timer, {})["fired_at"] = _at(event)
    elif isinstance(event, LinkCompletionReceived):
        view["completion"] = {"source": event.source, "at": _at(event)}
    elif isinstance(event, SagaCompensating):
        view["compensating"] = {
            "reason": event.reason,
            "step": event.step,
            "error": msgspec.to_builtins(event.error) if event.error else None,
            "at": _at(event),
        }
    elif isinstance(event, SagaResumed):
        view["result"] = None  # the clean-up goes on: no result yet
        view["resumed"].append(
            {
                "at": _at(event),
                "compensation": event.compensation,
                "command_id": event.command_id,
                "note": event.note,
            }
        )
    elif isinstance(event, LinkCompleted | LinkAborted | SagaNeedsAttention):
        body = msgspec.to_builtins(event)
        for envelope_field in ("originator_id", "originator_version", "metadata"):
            body.pop(envelope_field, None)
        view["result"] = {"event": type(event).__name__, **body}


def saga_text(view: dict[str, Any]) -> str:
    """The view as lines a person reads in a terminal."""
    lines = [
        f"saga {view['saga_id']} ({view['kind']}) — {view['status']}",
        f"  command {view['command_id']}, account {view['space_id']}/{view['account_id']}",
    ]
    for step in view["steps"]:
        for row in step["attempts"]:
            detail = (
                row.get("error", {}).get("code") if row["outcome"] in ("failed", "waited") else ""
            )
            lines.append(
                f"  step {step['name']} attempt {row['attempt']}: {row['outcome']}"
                f"{' (' + detail + ')' if detail else ''}  key={row.get('idempotency_key', '-')}"
            )
    for name, timer in view["timers"].items():
        fired = f", fired {timer['fired_at']}" if timer.get("fired_at") else ""
        lines.append(f"  timer {name}: due {timer.get('due_at')}{fired}")
    if view["completion"]:
        lines.append(f"  person finished via {view['completion']['source']}")
    if view["compensating"]:
        c = view["compensating"]
        lines.append(f"  compensating: {c['reason']} at step {c['step']}")
    for comp in view["compensations"]:
        for row in comp["attempts"]:
            lines.append(
                f"  compensation {comp['name']} attempt {row['attempt']}: {row['outcome']}"
            )
    for resume in view["resumed"]:
        lines.append(
            f"  resumed {resume['compensation']} by {resume['command_id']}: {resume['note']}"
        )
    if view["result"]:
        result = view["result"]
        reason = f" ({result.get('reason')})" if result.get("reason") else ""
        lines.append(f"  result: {result['event']}{reason}")
    return "\n".join(lines)

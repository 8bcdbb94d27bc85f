"""The saga engine's pure decisions: every path through a flow, crashes included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.base import DomainEvent
from events.errors import ErrorInfo
from events.saga import (
    LinkAborted,
    LinkCompleted,
    LinkCompletionReceived,
    SagaCompensationStarted,
    SagaNeedsAttention,
    SagaResumed,
    SagaStarted,
    SagaStepFailed,
    SagaStepStarted,
)
from sagas.decide import DEADLINE_PASSED, Done, Execute, Record, Wait, decide, outcome_event
from sagas.flows import LINK_FLOW, RECONNECT_FLOW
from sagas.state import SagaState, evolve, fold, idempotency_key_for

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SAGA = uuid.UUID(int=7)
Outcome = Literal["ok", "retry", "fail", "refused"]
REFUSAL_WAIT = timedelta(seconds=45)  # e.g. until an open breaker half-opens
CALL_STEPS = {
    "link": [s.name for s in LINK_FLOW.steps if s.kind == "call"],
    "reconnect": [s.name for s in RECONNECT_FLOW.steps if s.kind == "call"],
}


def started(kind: str = "link", deadline_s: float = 60.0) -> SagaState:
    event = SagaStarted(
        originator_id=SAGA,
        originator_version=1,
        timestamp=T0,
        kind="link" if kind == "link" else "reconnect",
        command_id="link-1",
        space_id="s",
        account_id="a",
        connection_id=uuid.UUID(int=9),
        params={"link_deadline_s": deadline_s, "provider": "plaid", "item_id": "i"},
    )
    state = fold(None, [event])
    assert state is not None
    return state


def error(code: str, retryable: bool) -> ErrorInfo:
    return ErrorInfo(code=code, message=code, type="unknown", retryable=retryable)


class Run:
    """Drives `decide` as the runner would, with scripted step outcomes and crashes."""

    def __init__(
        self,
        state: SagaState,
        outcomes: dict[str, list[Outcome]],
        *,
        person_finishes: bool = True,
        failing_compensations: frozenset[str] = frozenset(),
        crash_before_event: frozenset[str] = frozenset(),
    ) -> None:
        self.state, self.now = state, T0
        self.outcomes = {k: list(v) for k, v in outcomes.items()}
        self.person_finishes = person_finishes
        self.failing = failing_compensations
        self.crash_before_event = set(crash_before_event)
        self.events: list[DomainEvent] = []
        self.executed: list[tuple[str, str, int]] = []  # (what, name, attempt)
        self.effects: dict[str, int] = {}  # by idempotency key, as a provider would dedupe

    def record(self, events: list[DomainEvent]) -> None:
        for event in events:
            assert event.originator_version == self.state.version + 1
            self.state = evolve(self.state, event)
            self.events.append(event)

    def go(self, limit: int = 200) -> SagaState:
        for _ in range(limit):
            action = decide(self.state, self.now)
            if isinstance(action, Done):
                return self.state
            if isinstance(action, Wait):
                assert action.until > self.now
                if self._waiting_for_person() and self.person_finishes:
                    self.record([self._completion()])
                else:
                    self.now = action.until
            elif isinstance(action, Record):
                self.record(action.events)
            else:
                self._execute(action)
        raise AssertionError("the saga did not end")

    def _waiting_for_person(self) -> bool:
        flow = LINK_FLOW if self.state.kind == "link" else RECONNECT_FLOW
        step = next((s for s in flow.steps if s.name not in self.state.outputs), None)
        return step is not None and step.kind == "wait" and self.state.compensating is None

    def _completion(self) -> LinkCompletionReceived:
        return LinkCompletionReceived(
            originator_id=SAGA,
            originator_version=self.state.version + 1,
            timestamp=self.now,
            source="command",
            with_public_token=True,
        )

    def _execute(self, action: Execute) -> None:
        assert action.key == idempotency_key_for(
            SAGA, action.name, compensation=action.what == "compensation"
        )
        self.executed.append((action.what, action.name, action.attempt))
        self.effects[action.key] = 1  # a repeat under the same key is no new effect
        if action.name in self.crash_before_event:
            self.crash_before_event.discard(action.name)
            return  # the process died: nothing recorded; decide must hand out the same key
        failure: ErrorInfo | None = None
        wait_until = None
        if action.what == "compensation":
            if action.name in self.failing:
                failure = error("remove_failed", True)
        else:
            script = self.outcomes.get(action.name) or ["ok"]
            outcome = script.pop(0) if len(script) > 1 else script[0]
            if outcome == "refused":
                failure = error("all_providers_unavailable", True)
                wait_until = self.now + REFUSAL_WAIT
            elif outcome != "ok":
                failure = error(f"{action.name}_{outcome}", outcome == "retry")
        event = outcome_event(
            self.state, action, self.now, output={}, error=failure, wait_until=wait_until
        )
        self.record([event])


def test_a_flow_whose_steps_all_succeed_completes_in_order() -> None:
    run = Run(started(), {})
    state = run.go()
    assert state.status == "completed"
    assert list(state.outputs) == [s.name for s in LINK_FLOW.steps]
    assert isinstance(run.events[-1], LinkCompleted)
    assert [n for w, n, _ in run.executed if w == "step"] == CALL_STEPS["link"]


def test_a_retryable_failure_is_retried_after_a_backoff_under_the_same_key() -> None:
    run = Run(started(), {"get_accounts": ["retry", "ok"]})
    state = run.go()
    assert state.status == "completed"
    assert state.attempts["get_accounts"] == 2
    keys = [e.idempotency_key for e in run.events if isinstance(e, SagaStepStarted)]
    assert keys.count(idempotency_key_for(SAGA, "get_accounts")) == 2


def test_a_step_that_keeps_failing_retryably_is_compensated_after_its_last_attempt() -> None:
    run = Run(started(), {"exchange_token": ["retry"]})
    state = run.go()
    assert state.status == "aborted"
    assert state.attempts["exchange_token"] == LINK_FLOW.step("exchange_token").max_attempts
    assert state.compensated == ("mark_connection_aborted",)


def test_a_first_sync_refused_by_an_open_breaker_waits_without_spending_tries_then_runs() -> None:
    # More refusals than the step has tries, over far longer than the link deadline:
    # the link exists by then, and an outage must not undo it.
    refusals: list[Outcome] = ["refused"] * 10
    run = Run(started(deadline_s=60.0), {"sync_transactions": [*refusals, "ok"]})
    state = run.go()
    assert state.status == "completed" and state.compensated == ()
    assert state.attempts["sync_transactions"] == 11 and state.refusals["sync_transactions"] == 10
    waits = [e for e in run.events if isinstance(e, SagaStepFailed)]
    assert all(
        e.refused and e.retryable and e.retry_at == e.timestamp + REFUSAL_WAIT for e in waits
    )


def test_a_refused_step_still_has_all_its_tries_for_real_failures() -> None:
    script: list[Outcome] = ["refused", "refused", "retry", "retry", "ok"]
    state = Run(started(), {"get_accounts": script}).go()
    assert state.status == "completed"  # 2 failures of 3 allowed: the refusals spent none


def test_a_link_refused_past_its_deadline_aborts_instead_of_waiting_on() -> None:
    run = Run(started(deadline_s=60.0), {"create_link": ["refused"]})
    state = run.go()
    assert state.status == "aborted" and state.refusals["create_link"] == 1
    last = [e for e in run.events if isinstance(e, SagaStepFailed)][-1]
    assert not last.retryable and "refused for longer" in last.error.message
    # 45 s, then 90 s from the first refusal: past the 60 s deadline, no third wait.
    assert state.attempts["create_link"] == 2


def test_the_deadline_passing_without_the_person_aborts_at_the_wait_step() -> None:
    run = Run(started(deadline_s=30), {}, person_finishes=False)
    state = run.go()
    assert state.status == "aborted"
    assert state.compensating is not None
    assert (state.compensating.reason, state.compensating.step) == (
        DEADLINE_PASSED,
        "await_public_token",
    )
    assert run.now == T0 + timedelta(seconds=30)
    assert isinstance(run.events[-1], LinkAborted)


def test_a_compensation_that_keeps_failing_ends_in_needs_attention_with_the_reason() -> None:
    run = Run(
        started(), {"get_accounts": ["fail"]}, failing_compensations=frozenset({"remove_item"})
    )
    state = run.go()
    assert state.status == "needs_attention"
    assert state.attention is not None and "remove_item" in state.attention
    assert "remove_failed" in state.attention
    assert state.compensation_attempts["remove_item"] == LINK_FLOW.compensation_attempts
    assert isinstance(run.events[-1], SagaNeedsAttention)
    # Later compensations wait for the failing one: nothing is undone out of order.
    assert "forget_token" not in state.compensated


def resumed(state: SagaState, compensation: str, command_id: str = "resume-1") -> SagaResumed:
    return SagaResumed(
        originator_id=SAGA,
        originator_version=state.version + 1,
        timestamp=T0,
        compensation=compensation,
        command_id=command_id,
        note="removed the item by hand",
    )


def test_a_resumed_saga_retries_the_stuck_compensation_with_a_fresh_budget_then_goes_on() -> None:
    run = Run(
        started(), {"get_accounts": ["fail"]}, failing_compensations=frozenset({"remove_item"})
    )
    assert run.go().status == "needs_attention"
    budget = LINK_FLOW.compensation_attempts

    run.failing = frozenset()  # the operator fixed the cause
    run.record([resumed(run.state, "remove_item")])
    assert (run.state.status, run.state.attention) == ("compensating", None)
    state = run.go()

    assert state.status == "aborted"
    assert state.compensation_attempts["remove_item"] == budget + 1
    assert state.compensated[0] == "remove_item"
    assert "forget_token" in state.compensated  # what waited behind it ran too
    assert isinstance(run.events[-1], LinkAborted)


def test_a_resumed_compensation_that_fails_again_stops_after_one_more_budget() -> None:
    run = Run(
        started(), {"get_accounts": ["fail"]}, failing_compensations=frozenset({"remove_item"})
    )
    run.go()
    run.record([resumed(run.state, "remove_item")])
    state = run.go()

    assert state.status == "needs_attention"
    assert state.compensation_attempts["remove_item"] == 2 * LINK_FLOW.compensation_attempts
    assert state.resumed_by == ("resume-1",)


def test_a_step_started_but_not_recorded_runs_again_under_the_same_key() -> None:
    run = Run(started(), {}, crash_before_event=frozenset({"exchange_token"}))
    state = run.go()
    assert state.status == "completed"
    exchanges = [e for e in run.executed if e[1] == "exchange_token"]
    assert exchanges == [("step", "exchange_token", 1), ("step", "exchange_token", 1)]
    assert len([k for k in run.effects if k.endswith(":do:exchange_token")]) == 1


def test_decide_on_a_finished_saga_is_done_and_decide_is_repeatable() -> None:
    run = Run(started(), {})
    state = run.go()
    assert decide(state, T0) == Done()
    half = fold(started(), run.events[:5])
    assert half is not None
    assert decide(half, T0) == decide(half, T0)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["link", "reconnect"]),
    scripts=st.dictionaries(
        st.sampled_from(sorted({*CALL_STEPS["link"], *CALL_STEPS["reconnect"]})),
        st.lists(st.sampled_from(["ok", "retry", "fail"]), min_size=1, max_size=4),
    ),
    person_finishes=st.booleans(),
    crashes=st.frozensets(
        st.sampled_from(["create_link", "exchange_token", "get_accounts", "remove_item"])
    ),
    failing=st.frozensets(st.sampled_from(["remove_item", "forget_token"])),
)
def test_every_run_ends_with_each_completed_step_undone_once_in_reverse_or_flagged(
    kind: str,
    scripts: dict[str, list[Outcome]],
    person_finishes: bool,
    crashes: frozenset[str],
    failing: frozenset[str],
) -> None:
    flow = LINK_FLOW if kind == "link" else RECONNECT_FLOW
    run = Run(
        started(kind),
        scripts,
        person_finishes=person_finishes,
        failing_compensations=failing,
        crash_before_event=crashes,
    )
    state = run.go()

    assert state.finished
    for step in flow.steps:
        assert state.attempts.get(step.name, 0) <= step.max_attempts
    if state.status == "completed":
        assert list(state.outputs) == [s.name for s in flow.steps]
        assert not state.compensated
        return
    expected = [c for step in reversed(list(state.outputs)) for c in flow.step(step).compensations]
    started_comps = [e for e in run.events if isinstance(e, SagaCompensationStarted)]
    if state.status == "aborted":
        assert list(state.compensated) == expected
        assert len(set(state.compensated)) == len(state.compensated)
    else:
        assert state.status == "needs_attention"
        assert state.attention
        assert list(state.compensated) == expected[: len(state.compensated)]
    # Only completed steps are undone, and nothing is undone before the saga gave up.
    assert {e.for_step for e in started_comps} <= set(state.outputs)
    if not person_finishes and kind == "link" and "create_link" in state.outputs:
        assert state.compensating is not None

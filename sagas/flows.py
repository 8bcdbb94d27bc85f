"""The flows a saga can run: their steps in order, and the compensations next to them.

A flow is data, so the engine (`decide`) stays one pure function for every
flow. A step either calls out (`call`) or waits for the person (`wait`,
bounded by a durable timer). Each step names the compensations that undo it,
run in the order listed; steps are undone in reverse order of completion.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import msgspec

from services.resilience.retry import DEFAULT_SYNC_MAX_AGE

StepKind = Literal["call", "wait"]


class StepSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: StepKind = "call"
    compensations: tuple[str, ...] = ()
    max_attempts: int = 3
    timer: str | None = None  # wait steps: the deadline's name
    # How long a step refused without a call (a breaker open, a limit) may keep
    # waiting, from its first refusal; None: the saga's link deadline.
    max_wait: timedelta | None = None


class RetryBackoff(msgspec.Struct, frozen=True, kw_only=True):
    """Delay before attempt n+1: `base * 2**(n-1)`, capped."""

    base: timedelta = timedelta(milliseconds=500)
    cap: timedelta = timedelta(seconds=30)

    def after(self, attempt: int) -> timedelta:
        return min(self.cap, self.base * int(2 ** max(attempt - 1, 0)))


class Flow(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    steps: tuple[StepSpec, ...]
    step_backoff: RetryBackoff = RetryBackoff()
    # Compensations must finish: more tries, longer waits, then needs_attention.
    compensation_attempts: int = 5
    compensation_backoff: RetryBackoff = RetryBackoff(base=timedelta(seconds=1))

    def step(self, name: str) -> StepSpec:
        for spec in self.steps:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.kind} flow has no step {name!r}")


LINK_FLOW = Flow(
    kind="link",
    steps=(
        StepSpec(name="create_link", compensations=("mark_connection_aborted",)),
        StepSpec(name="await_public_token", kind="wait", timer="link_deadline"),
        # remove_item needs the access token, so it runs before forget_token.
        StepSpec(name="exchange_token", compensations=("remove_item", "forget_token")),
        # The link exists by now: an outage must not undo it, so these wait as
        # long as a sync would (services/resilience/retry.py).
        StepSpec(name="get_accounts", max_wait=DEFAULT_SYNC_MAX_AGE),
        StepSpec(name="sync_transactions", max_wait=DEFAULT_SYNC_MAX_AGE),
    ),
)

RECONNECT_FLOW = Flow(
    kind="reconnect",
    steps=(
        StepSpec(name="create_update_link"),
        StepSpec(name="await_completion", kind="wait", timer="link_deadline"),
        StepSpec(name="mark_usable"),
        StepSpec(name="sync_transactions", max_wait=DEFAULT_SYNC_MAX_AGE),
    ),
)

FLOWS: dict[str, Flow] = {LINK_FLOW.kind: LINK_FLOW, RECONNECT_FLOW.kind: RECONNECT_FLOW}

DEFAULT_LINK_DEADLINE = timedelta(minutes=30)

"""The saga runner: asks `decide` what next for one saga, does it, records it.

One runs in every worker process, fed by the schedule (`infra/saga_scheduler.py`),
which hands it due sagas under a lease, so a saga is advanced by one holder at a
time while sagas of different connections advance at once; after a crash the
lease runs out and any runner picks the saga up where its events say it is.

A step is recorded as started (with its idempotency key) before its side
effect, and as succeeded or failed after, in the same transaction as what it
changed on the connection. `SYNCYARD_SAGA_CRASH_AT` is a fault-injection hook
for tests (`CrashHook`); unset, it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from events.base import DomainEvent
from sagas.decide import Done, Execute, Record, Wait, decide, outcome_event
from sagas.link_steps import LINK_EXECUTORS
from sagas.ports import SagaConflictError, SagaStore
from sagas.reconnect_steps import RECONNECT_EXECUTORS
from sagas.state import SagaState, evolve, fold
from sagas.steps import Executor, StepContext, StepFailedError, StepResult
from services.dependencies import Dependencies
from services.ports import Change

log = logging.getLogger(__name__)

EXECUTORS: dict[str, Mapping[str, Executor]] = {
    "link": LINK_EXECUTORS,
    "reconnect": RECONNECT_EXECUTORS,
}
CRASH_ENV = "SYNCYARD_SAGA_CRASH_AT"


class CrashHook:
    """Fault injection for crash tests: SIGKILL this process at one step boundary.

    `SYNCYARD_SAGA_CRASH_AT=<step>:<after_effect|after_event>` kills the
    process right after that step's (or compensation's) side effect, before
    its event is recorded, or right after the event. Unset: inert.
    """

    POINTS = ("after_effect", "after_event")

    def __init__(self, spec: str | None) -> None:
        self.step: str | None = None
        self.point: str | None = None
        if spec:
            step, _, point = spec.partition(":")
            if point not in self.POINTS:
                raise ValueError(f"{CRASH_ENV}={spec!r}: write STEP:after_effect|after_event")
            self.step, self.point = step, point

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CrashHook:
        return cls((os.environ if env is None else env).get(CRASH_ENV))

    def at(self, step: str, point: str) -> None:
        if self.step == step and self.point == point:
            log.warning("fault injection: SIGKILL at %s:%s", step, point)
            os.kill(os.getpid(), signal.SIGKILL)


class SagaRunner:
    def __init__(
        self,
        deps: Dependencies,
        store: SagaStore,
        *,
        owner: str,
        lease_s: float = 30.0,
        webhook_base: Callable[[], str | None] = lambda: None,
        crash: CrashHook | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.deps = deps
        self.store = store
        self.lease_s = lease_s
        self.webhook_base = webhook_base
        self.crash = crash or CrashHook(None)
        self.now = now
        self.owner = owner
        self.steps_run = 0

    async def advance(self, saga_id: uuid.UUID) -> datetime | None:
        """Run the saga until it waits (returns when to look again) or ends (None)."""
        state = await self.store.load(saga_id)
        if state is None:
            return None
        renewed = time.monotonic()
        while True:
            action = decide(state, self.now())
            if isinstance(action, Done):
                return None
            if isinstance(action, Wait):
                return action.until
            # A stale holder's appends are refused by version anyway; renewing
            # keeps another runner from taking a saga that is still moving.
            if time.monotonic() - renewed > self.lease_s / 3:
                if not await self.store.renew(saga_id, self.owner):
                    raise SagaConflictError(f"saga {saga_id}: lease lost")
                renewed = time.monotonic()
            if isinstance(action, Record):
                await self.store.append(action.events)
                state = _folded(state, action.events)
            else:
                keepalive = asyncio.create_task(self._keep_lease(saga_id))
                try:
                    state = await self._execute(state, action)
                finally:
                    keepalive.cancel()
                renewed = time.monotonic()

    async def _keep_lease(self, saga_id: uuid.UUID) -> None:
        # A provider call may outlast the lease (timeouts, retries, failover).
        with contextlib.suppress(asyncio.CancelledError, Exception):
            while True:
                await asyncio.sleep(self.lease_s / 3)
                await self.store.renew(saga_id, self.owner)

    async def _execute(self, state: SagaState, action: Execute) -> SagaState:
        now = self.now()
        base = self.webhook_base()
        ctx = StepContext(
            deps=self.deps,
            store=self.store,
            state=state,
            attempt=action.attempt,
            key=action.key,
            now=now,
            webhook_url=f"{base.rstrip('/')}/v1/sagas/{state.id}/webhook" if base else None,
        )
        try:
            result = await EXECUTORS[state.kind][action.name](ctx)
        except StepFailedError as exc:
            result = StepResult(error=exc.error)
        self.steps_run += 1
        self.crash.at(action.name, "after_effect")
        event = outcome_event(
            state, action, now, output=result.output, error=result.error,
            wait_until=result.wait_until,
        )  # fmt: skip
        # What follows without I/O (e.g. the next step's start) rides in the same
        # transaction: half the commits per step, and nothing recorded out of order.
        after = evolve(state, event)
        following = decide(after, now)
        chained = following.events if isinstance(following, Record) else []
        saga_and_private = [event, *chained, *result.private]
        if result.connection is not None:
            change = Change(
                connection_id=state.connection_id,
                decide=result.connection,
                side_events=saga_and_private,
            )
            # [] only when the change decided nothing on the connection (its side
            # events then go unsaved): a commit of ours whose answer was lost comes
            # back as what it recorded (infra/eventstore.py), never [], so this
            # append is not our own step's events again, which would conflict.
            if not await self.deps.store.commit(change):
                await self.store.append(saga_and_private)
        else:
            await self.store.append(saga_and_private)
        self.crash.at(action.name, "after_event")
        return _folded(after, chained)


def _folded(state: SagaState, events: list[DomainEvent]) -> SagaState:
    folded = fold(state, events)
    assert folded is not None
    return folded

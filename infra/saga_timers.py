"""Sagas on the one scheduler: a due saga timer has the runner advance that saga."""

from __future__ import annotations

import uuid
from datetime import datetime

from infra.saga_store import KIND
from infra.scheduler import Scheduler, Timer
from sagas.ports import SagaConflictError
from sagas.runner import SagaRunner


def advance_sagas_with(scheduler: Scheduler, runner: SagaRunner) -> None:
    """Every due saga timer this process claims is advanced by `runner`."""

    async def fire(timer: Timer) -> datetime | None:
        try:
            return await runner.advance(uuid.UUID(timer.key))
        except SagaConflictError:
            return runner.now()  # another holder moved it on: look again from its events

    scheduler.handle(KIND, fire)

"""The saga schedule's loop: claims due sagas under a lease and has the runner advance them.

Every worker process runs one. Rows are claimed `FOR UPDATE SKIP LOCKED`
(`PostgresSagaStore.claim`), so several processes share the work and a dead
one's sagas are taken over when its lease runs out. A NOTIFY on the wake
channel (a saga was scheduled or woken) cuts the wait short.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta

from infra.eventlog.listening import listening
from infra.saga_store import WAKE_CHANNEL, PostgresSagaStore
from infra.waiting import wait_for_either
from sagas.ports import SagaConflictError
from sagas.runner import SagaRunner

log = logging.getLogger(__name__)

ERROR_RETRY = timedelta(seconds=1)


class SagaScheduler:
    def __init__(
        self, runner: SagaRunner, store: PostgresSagaStore, *, concurrency: int = 64
    ) -> None:
        self.runner = runner
        self.store = store
        self.concurrency = concurrency
        self.owner = runner.owner
        self.lease_s = runner.lease_s
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.store.setup()
        async with listening(self.store.pool, WAKE_CHANNEL, self._on_notify):
            try:
                await self._claim_until(stop)
            finally:
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _claim_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            free = self.concurrency - len(self._tasks)
            claimed = await self.store.claim(self.owner, self.lease_s, free) if free else []
            for saga_id, wakes in claimed:
                task = asyncio.create_task(self._work(saga_id, wakes))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(lambda _: self._wake.set())
            if claimed and len(claimed) == free:
                continue
            gap = await self.store.seconds_to_next()
            sleep = 1.0 if gap is None else max(0.01, min(1.0, gap))
            await wait_for_either(stop, self._wake, sleep)

    async def _work(self, saga_id: uuid.UUID, wakes: int) -> None:
        due: datetime | None
        try:
            due = await self.runner.advance(saga_id)
        except SagaConflictError:
            due = self.runner.now()  # another holder moved it on: look again from its events
        except Exception:
            log.exception("saga %s: advancing failed; retrying", saga_id)
            due = self.runner.now() + ERROR_RETRY
        if due is None:
            await self.store.finish(saga_id)
        else:
            await self.store.release(saga_id, self.owner, wakes, due)

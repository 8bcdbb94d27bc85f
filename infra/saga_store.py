"""Where sagas live: their event streams, and their timers on the one scheduler.

The stream is the truth. A timer of kind `saga` (`infra/scheduler.py`) only
says "look at saga X at time T": it exists while a saga is unfinished, and a
worker claims it with a lease, so any worker resumes any saga (a dead
worker's lease runs out), different sagas run at once, and one saga has one
holder at a time. A stale holder cannot do harm: its appends carry the
versions it read, and the store refuses them once another holder moved the
stream on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.application import Application

from events.base import DomainEvent
from events.credentials import PublicTokenReceived
from infra.eventlog.reader import decode_stored
from infra.scheduler import Scheduler, timer_of
from sagas.flows import DEFAULT_LINK_DEADLINE
from sagas.ports import SagaConflictError, SagaStore
from sagas.state import SagaState, fold, public_token_stream_for
from services.ports import DbConnection, EventStorePort, StreamConflictError

KIND = "saga"


class PostgresSagaStore(SagaStore):
    def __init__(
        self,
        app: Application[UUID],
        pool: asyncpg.Pool,
        events_table: str,
        *,
        writer: EventStorePort,
        scheduler: Scheduler,
        link_deadline_s: float = DEFAULT_LINK_DEADLINE.total_seconds(),
    ) -> None:
        self.app = app
        self.pool = pool
        self.writer = writer
        self.scheduler = scheduler
        # For flows whose command names none; recorded in the saga when it starts.
        self.link_deadline_s = link_deadline_s
        self._read = (
            "SELECT topic, state FROM "  # noqa: S608 - our table name, never input
            f'"{events_table}" WHERE originator_id = $1 ORDER BY originator_version'
        )

    # -- streams -------------------------------------------------------------
    async def events(self, stream_id: UUID) -> list[DomainEvent]:
        rows = await self.pool.fetch(self._read, stream_id)
        return [decode_stored(self.app.mapper, r["topic"], r["state"]) for r in rows]

    async def load(self, saga_id: UUID) -> SagaState | None:
        return fold(None, await self.events(saga_id))

    async def append(self, events: Sequence[DomainEvent]) -> None:
        """Append atomically, through the event store's one group committer.

        SagaConflictError if a stream moved meanwhile: another holder advanced
        the saga, and this one must let go.
        """
        try:
            await self.writer.append(events)
        except StreamConflictError as exc:
            raise SagaConflictError(str(exc)) from None

    async def public_token(self, saga_id: UUID) -> str | None:
        for event in await self.events(public_token_stream_for(saga_id)):
            if isinstance(event, PublicTokenReceived):
                return event.public_token
        return None

    # -- schedule ------------------------------------------------------------
    async def schedule(self, saga_id: UUID, due_at: datetime) -> None:
        await self.scheduler.schedule(KIND, str(saga_id), due_at)

    async def wake(self, saga_id: UUID) -> None:
        await self.scheduler.wake(KIND, str(saga_id))

    async def renew(self, saga_id: UUID, owner: str) -> bool:
        return await self.scheduler.renew(KIND, str(saga_id), owner)

    async def scheduled(self, saga_id: UUID) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            return await schedule_of(conn, saga_id)


async def schedule_of(conn: DbConnection, saga_id: UUID) -> dict[str, Any] | None:
    """The saga's timer (due time, lease), or None once it has ended."""
    return await timer_of(conn, KIND, str(saga_id))

"""Where sagas live: their event streams, and the schedule that says when to look at each.

The stream is the truth. `syncyard_saga_schedule` only says "look at saga X
at time T": a row exists while a saga is unfinished, and a worker claims due
rows with `FOR UPDATE SKIP LOCKED` and a lease, so any worker resumes any
saga (a dead worker's lease runs out), different sagas run at once, and one
saga has one holder at a time. A stale holder cannot do harm: its appends
carry the versions it read, and the store refuses them once another holder
moved the stream on. `wakes` counts outside nudges (a public token arrived)
so a holder releasing the row does not push a nudge it never saw back to its
old due time. `syncyard_saga_index` finds a saga from a provider's webhook
(by link token or item id).
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
from sagas.flows import DEFAULT_LINK_DEADLINE
from sagas.ports import SagaConflictError, SagaStore
from sagas.state import SagaState, fold, public_token_stream_for
from services.ports import DbConnection, EventStorePort, StreamConflictError

WAKE_CHANNEL = "syncyard_saga_wake"

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_saga_schedule (
    saga_id uuid PRIMARY KEY,
    kind text NOT NULL,
    due_at timestamptz NOT NULL,
    wakes bigint NOT NULL DEFAULT 0,
    lease_owner text,
    lease_until timestamptz
);
CREATE INDEX IF NOT EXISTS syncyard_saga_schedule_due ON syncyard_saga_schedule (due_at);
"""

_CLAIM = """
UPDATE syncyard_saga_schedule s SET lease_owner = $1, lease_until = now() + $2 * interval '1 second'
FROM (
    SELECT saga_id FROM syncyard_saga_schedule
    WHERE due_at <= now() AND (lease_until IS NULL OR lease_until < now())
    ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED
) due
WHERE s.saga_id = due.saga_id
RETURNING s.saga_id, s.wakes
"""
_RELEASE = """
UPDATE syncyard_saga_schedule
SET due_at = CASE WHEN wakes <> $3 THEN now() ELSE $4 END, lease_owner = NULL, lease_until = NULL
WHERE saga_id = $1 AND lease_owner = $2
"""


class PostgresSagaStore(SagaStore):
    def __init__(
        self,
        app: Application[UUID],
        pool: asyncpg.Pool,
        events_table: str,
        *,
        writer: EventStorePort,
        link_deadline_s: float = DEFAULT_LINK_DEADLINE.total_seconds(),
    ) -> None:
        self.app = app
        self.pool = pool
        self.writer = writer
        # For flows whose command names none; recorded in the saga when it starts.
        self.link_deadline_s = link_deadline_s
        self._read = (
            "SELECT topic, state FROM "  # noqa: S608 - our table name, never input
            f'"{events_table}" WHERE originator_id = $1 ORDER BY originator_version'
        )

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(SCHEMA)

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
    async def schedule(self, saga_id: UUID, kind: str, due_at: datetime) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO syncyard_saga_schedule (saga_id, kind, due_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (saga_id) DO NOTHING",
                saga_id,
                kind,
                due_at,
            )
            await conn.execute(f"NOTIFY {WAKE_CHANNEL}")

    async def wake(self, saga_id: UUID) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE syncyard_saga_schedule SET due_at = now(), wakes = wakes + 1 "
                "WHERE saga_id = $1",
                saga_id,
            )
            await conn.execute(f"NOTIFY {WAKE_CHANNEL}")

    async def claim(self, owner: str, lease_s: float, limit: int) -> list[tuple[UUID, int]]:
        rows = await self.pool.fetch(_CLAIM, owner, lease_s, limit)
        return [(r["saga_id"], int(r["wakes"])) for r in rows]

    async def renew(self, saga_id: UUID, owner: str, lease_s: float) -> bool:
        status = await self.pool.execute(
            "UPDATE syncyard_saga_schedule SET lease_until = now() + $3 * interval '1 second' "
            "WHERE saga_id = $1 AND lease_owner = $2",
            saga_id,
            owner,
            lease_s,
        )
        return bool(status.endswith(" 1"))

    async def release(self, saga_id: UUID, owner: str, wakes: int, due_at: datetime) -> None:
        await self.pool.execute(_RELEASE, saga_id, owner, wakes, due_at)

    async def finish(self, saga_id: UUID) -> None:
        await self.pool.execute("DELETE FROM syncyard_saga_schedule WHERE saga_id = $1", saga_id)

    async def seconds_to_next(self) -> float | None:
        value: Any = await self.pool.fetchval(
            "SELECT extract(epoch FROM min(GREATEST(due_at, COALESCE(lease_until, due_at))) "
            "- now()) FROM syncyard_saga_schedule"
        )
        return None if value is None else float(value)

    async def scheduled(self, saga_id: UUID) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            return await schedule_of(conn, saga_id)


async def schedule_of(conn: DbConnection, saga_id: UUID) -> dict[str, Any] | None:
    """The saga's row in the schedule (due time, lease), or None once it has ended."""
    row = await conn.fetchrow(
        "SELECT due_at, lease_owner, lease_until, wakes FROM syncyard_saga_schedule "
        "WHERE saga_id = $1",
        saga_id,
    )
    return dict(row) if row is not None else None

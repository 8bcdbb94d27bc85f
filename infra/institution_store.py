"""The institution mapping's streams in the event store, next to every other aggregate's.

Writes go through the eventsourcing recorder (its version check is what makes
exactly one replica win a race; a retried write that finds exactly its own events
recorded was ours, its answer lost); reading every institution event at start is
one asyncpg query by topic. `open_institutions` is what the composition root
calls: seed on first start, load, and hand back the follower to run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import asyncpg

from events.base import DomainEvent
from events.institutions import INSTITUTION_EVENT_TYPES
from infra.eventlog.institution_follower import InstitutionFollower
from infra.eventlog.reader import NotificationLogReader, decode_stored
from infra.eventstore import EVENTS_TABLE, SyncyardApplication, put_unless_taken
from services.institutions.handlers import Institutions
from services.institutions.seed import SEED_PATH, load_seed, open_directory
from services.institutions.store import InstitutionStore
from services.ports import topic_of
from services.providers.registry import ADAPTER_FACTORIES

TOPICS = [topic_of(cls) for cls in INSTITUTION_EVENT_TYPES]


class PostgresInstitutionStore(InstitutionStore):
    """Institution events straight into the event store: rare, so no group commit."""

    def __init__(self, app: SyncyardApplication, pool: asyncpg.Pool) -> None:
        self.app = app
        self.pool = pool
        # The recorder indexes streams, not topics, so this scans the table; it
        # runs once per start, and the directory follows changes in memory after.
        self._select_all = (
            "SELECT topic, state FROM "  # noqa: S608 - our table name, never input
            f'"{EVENTS_TABLE}" WHERE topic = ANY($1::text[]) ORDER BY notification_id'
        )

    async def load(self, mapping_id: UUID) -> list[DomainEvent]:
        return await asyncio.to_thread(lambda: list(self.app.events.get(mapping_id)))  # type: ignore[arg-type]

    async def load_all(self) -> list[DomainEvent]:
        rows = await self.pool.fetch(self._select_all, TOPICS)
        return [decode_stored(self.app.mapper, row["topic"], row["state"]) for row in rows]

    async def append(self, events: list[DomainEvent]) -> bool:
        # A change whose commit lost its answer is recognised as ours (`put_unless_taken`):
        # the handler answers it as made, not decided again and called a duplicate.
        return await asyncio.to_thread(put_unless_taken, self.app, events)


async def open_institutions(
    app: SyncyardApplication,
    pool: asyncpg.Pool,
    *,
    hierarchy: Mapping[str, tuple[str, ...]],
    providers: Collection[str],
    seed_path: Path = SEED_PATH,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[Institutions, InstitutionFollower]:
    """The mapping ready for `Dependencies.institutions`, and the follower that keeps
    this replica's directory current (run it under `supervise`).

    A mapping may name any provider kind we speak or any provider configured
    here (`providers`, e.g. `plaid_eu`). Raises SeedError for a bad seed file.
    """
    store = PostgresInstitutionStore(app, pool)
    reader = NotificationLogReader(EVENTS_TABLE, app.mapper)
    async with pool.acquire() as conn:
        # Read before loading: the follower replays from here, so a change
        # recorded by another replica while we load is not missed.
        position = await reader.max_id(conn)
    known = frozenset(ADAPTER_FACTORIES) | frozenset(providers)
    directory = await open_directory(
        store,
        hierarchy=hierarchy,
        known=known,
        now=now,
        seed=load_seed(seed_path),
        source=seed_path.name,
    )
    institutions = Institutions(store=store, directory=directory, known_providers=known)
    return institutions, InstitutionFollower(pool, reader, directory, position=position)

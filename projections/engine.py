"""The projection engine: follow the notification log into read models, exactly once.

Each projection keeps its position in `syncyard_projection_position`, updated
in the same transaction as the rows a page of events changed. The position
row is locked FOR UPDATE first, so two projector processes never apply one
event twice: the second waits, then sees the advanced position.

The same `apply_page` serves live tailing (`infra/eventlog/projector.py`), full replay, verification
and as-of rebuilds (`projections/rebuild.py`): those build the same tables in
another PostgreSQL schema, chosen per transaction with `SET LOCAL
search_path`, with that schema's own position table.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Mapping, Sequence

import asyncpg

from events.base import DomainEvent
from projections.lag import projection_lag, register_lag_gauge
from projections.schemas import (
    DEFAULT_EVENTS_TABLE,
    POSITIONS,
    Borrowed,
    checked_schema,
    use_schema,
)
from services.ports import DbConnection, LogReader, Notification, topic_of

# Re-exported: callers find the whole engine here.
__all__ = [
    "DEFAULT_EVENTS_TABLE",
    "POSITIONS",
    "Projection",
    "ProjectionVersionError",
    "apply_next_page",
    "checked_schema",
    "migrate",
    "projection_lag",
    "register_lag_gauge",
    "use_schema",
]

log = logging.getLogger(__name__)

PAGE_SIZE = 1000

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {POSITIONS} (
    projection text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE {POSITIONS} ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;
"""
# Two processes creating the same tables at once can collide in the catalog.
_MIGRATION_LOCK = 0x5_7E_C7


class ProjectionVersionError(RuntimeError):
    """The database holds another version of these read models than this code builds.

    During a rolling deploy the old and the new code run side by side: the new
    one migrates (and rebuilds) a read model, and the old one must then leave
    it alone rather than write rows of the old shape or migrate it back.
    """

    def __init__(self, names: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.names = tuple(names)


class Projection(abc.ABC):
    """One read model: its schema, the events it reads, and how it applies them."""

    name: str
    schema: str
    handles: tuple[type[DomainEvent], ...]
    # The tables `schema` creates (unqualified: replay and as-of build them in
    # another schema through search_path), and the version of that DDL: a
    # projection whose version changed is rebuilt from zero.
    tables: tuple[str, ...] = ()
    version: int = 1

    @abc.abstractmethod
    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        """Apply a page of events (only those in `handles`, in log order) in one transaction.

        A page, not an event, is the unit so a projection can fold it in memory
        and write each row once: a round trip per event would cap the projector.
        """

    def topics(self) -> frozenset[str]:
        return frozenset(topic_of(cls) for cls in self.handles)

    async def refresh_metrics(self, conn: DbConnection) -> None:  # noqa: B027 - optional hook
        """Refresh the gauges this read model feeds, if any (the live projector calls
        it about once a second, after the lag)."""


async def migrate(
    pool_or_conn: asyncpg.Pool | DbConnection,
    projections: Iterable[Projection],
    *,
    schema: str | None = None,
    skip_newer: bool = False,
) -> list[str]:
    """Create the position table and each projection's tables in `schema` (None: the live ones).

    A projection whose stored version is older than its `version` has its
    `tables` dropped and recreated, and its position set back to zero: the
    projector then rebuilds it from the first event. Returns those names.
    A stored version newer than the code's is never migrated back: it raises
    ProjectionVersionError, or with `skip_newer` (a live projector in a
    rolling deploy) is left alone with a warning.
    """
    async with Borrowed(pool_or_conn) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        if schema is not None:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {checked_schema(schema)}")
        await use_schema(conn, schema)
        await conn.execute(SCHEMA)
        rebuilt = []
        for projection in projections:
            stored = await conn.fetchval(
                f"SELECT version FROM {POSITIONS} WHERE projection = $1 FOR UPDATE",  # noqa: S608
                projection.name,
            )
            if stored is not None and stored > projection.version:
                message = (
                    f"projection {projection.name}: version {stored} in the database is newer "
                    f"than this code's {projection.version}"
                )
                if not skip_newer:
                    raise ProjectionVersionError([projection.name], message)
                log.warning("%s: left to the replicas that run it", message)
                continue
            if stored is not None and stored != projection.version:
                if not projection.tables:
                    raise RuntimeError(
                        f"projection {projection.name} changed version but declares no "
                        "`tables`: its old rows cannot be dropped, so it cannot be rebuilt"
                    )
                log.warning(
                    "projection %s: version %s stored, %s in code: rebuilding it from zero",
                    projection.name,
                    stored,
                    projection.version,
                )
                for table in projection.tables:
                    await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
                rebuilt.append(projection.name)
            await conn.execute(projection.schema)
            await conn.execute(
                f"INSERT INTO {POSITIONS} (projection, position, version) VALUES ($1, 0, $2) "  # noqa: S608
                "ON CONFLICT (projection) DO UPDATE SET position = 0, version = EXCLUDED.version, "
                f"updated_at = now() WHERE {POSITIONS}.version <> EXCLUDED.version",
                projection.name,
                projection.version,
            )
        return rebuilt


async def apply_next_page(
    conn: DbConnection,
    reader: LogReader,
    projections: Sequence[Projection],
    *,
    page_size: int = PAGE_SIZE,
    schema: str | None = None,
    upto: int | None = None,
) -> int:
    """One page of the log into `projections`, with their positions, in one transaction.

    The page is read and decoded once, from the position furthest behind, for the
    topics any of them handles; each projection gets the events past its own
    position. Returns how many notification ids the page moved past (0: nothing new).
    """
    names = [p.name for p in projections]
    async with conn.transaction():
        await use_schema(conn, schema)
        # Locked in name order, so two projectors never wait on each other in a cycle.
        rows = await conn.fetch(
            f"SELECT projection, position, version FROM {POSITIONS} "  # noqa: S608 - our table
            "WHERE projection = ANY($1::text[]) ORDER BY projection FOR UPDATE",
            names,
        )
        positions = {row["projection"]: int(row["position"]) for row in rows}
        if missing := [name for name in names if name not in positions]:
            raise LookupError(f"projections {missing} have no position: migrate them first")
        versions = {row["projection"]: row["version"] for row in rows}
        if migrated := [p.name for p in projections if versions[p.name] != p.version]:
            raise ProjectionVersionError(
                migrated, f"projections {migrated} were migrated to another version meanwhile"
            )
        start = min(positions.values())
        topics = frozenset().union(*(p.topics() for p in projections))
        page = await reader.read(conn, start, page_size, topics, upto=upto)
        if page.last_id == start:
            return 0
        moved = []
        for projection in projections:
            position = positions[projection.name]
            if page.last_id <= position:
                continue
            mine = projection.topics()
            notes = [n for n in page.notifications if n.id > position and n.topic in mine]
            if notes:
                await projection.apply_page(conn, notes)
            moved.append(projection.name)
        await conn.execute(
            f"UPDATE {POSITIONS} SET position = $2, updated_at = now() "  # noqa: S608
            "WHERE projection = ANY($1::text[])",
            moved,
            page.last_id,
        )
        return page.last_id - start


def cohorts(
    projections: Sequence[Projection], positions: Mapping[str, int], page_size: int
) -> list[list[Projection]]:
    """Projections within a page of the one furthest ahead share pages; the others
    (one rebuilding from zero) catch up on their own, so the current ones do not
    wait for them."""
    if not projections:
        return []
    ahead = max(positions.get(p.name, 0) for p in projections)
    current = [p for p in projections if positions.get(p.name, 0) > ahead - page_size]
    behind = [p for p in projections if p not in current]
    return [current, *([behind] if behind else [])]

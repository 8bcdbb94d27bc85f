"""Replay: projections rebuilt from the event store into another schema, with their own code.

`build` replays the log into a schema of its own, reading each page once for
every projection asked for (the live projector reads per projection, since
their positions differ) and handing each projection its events through the
same `apply_page` the live projector calls. On top of it:

- `rebuild_live` (`syncyard replay --from-zero`) builds in a shadow schema
  and swaps the finished tables in for the live ones in one transaction that
  holds the live position rows, so readers see the old tables until the new
  ones are complete and a crash at any point leaves the live tables intact;
- `as_of` builds chosen projections from the events stamped up to a time,
  into a temporary schema that is dropped afterwards;
- verification lives in `projections/verify.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

import asyncpg

from projections.engine import (
    POSITIONS,
    Projection,
    apply_next_page,
    checked_schema,
    migrate,
    use_schema,
)
from projections.replay_gc import young_objects_collected_less_often
from services.ports import DbConnection, LogReader, Notification, Page

REPLAY_PAGE_SIZE = 10_000
# Pages a projection may lag behind the reader in a build (decoded pages held in memory).
PAGES_AHEAD = 2
# Writer connections a build takes, at most (plus one that reads the log).
MAX_WRITERS = 4
# Called after each page with (notifications read so far, how many there are to read).
Progress = Callable[[int, int], None]


def scratch_schema(purpose: str) -> str:
    return checked_schema(f"syncyard_{purpose}_{uuid.uuid4().hex[:10]}")


async def drop_schema(pool_or_conn: asyncpg.Pool | DbConnection, schema: str) -> None:
    if checked_schema(schema) == "public":
        raise ValueError("refusing to drop the live schema")
    await pool_or_conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def build(
    pool: asyncpg.Pool,
    reader: LogReader,
    projections: Sequence[Projection],
    schema: str,
    *,
    upto: int | None = None,
    until: datetime | None = None,
    page_size: int = REPLAY_PAGE_SIZE,
    progress: Progress | None = None,
) -> int:
    """Replay the log into `projections`' tables in `schema`, made fresh; returns its position.

    `upto` stops at a notification id (default: the head when it starts);
    `until` applies only events stamped at or before that time.
    """
    if not projections:
        raise ValueError("nothing to build: no projection given")
    await drop_schema(pool, schema)
    await migrate(pool, projections, schema=schema)
    with young_objects_collected_less_often():
        return await _build(
            pool, reader, projections, schema,
            upto=upto, until=until, page_size=page_size, progress=progress,
        )  # fmt: skip


async def _build(
    pool: asyncpg.Pool,
    reader: LogReader,
    projections: Sequence[Projection],
    schema: str,
    *,
    upto: int | None,
    until: datetime | None,
    page_size: int,
    progress: Progress | None,
) -> int:
    async with contextlib.AsyncExitStack() as stack:
        # A few writer connections, each with its share of the read models: each
        # applies its share of every page in its own transactions (each read model
        # with its own position), a few pages behind the reader at most, so a read
        # model that is slow on one page does not hold the others (or the decoding
        # of the next pages) back. Bounded, so a build never needs more of the
        # pool than MAX_WRITERS + 1 connections, however many read models there are.
        # Each writer's share, as indices into `projections`.
        groups = [list(range(len(projections)))[i::MAX_WRITERS] for i in range(MAX_WRITERS)]
        groups = [group for group in groups if group]
        writers = [await stack.enter_async_context(pool.acquire()) for _ in groups]
        head = upto if upto is not None else await reader.max_id(writers[0])
        topics = frozenset().union(*(p.topics() for p in projections))
        inboxes = [asyncio.Queue[Page | None](maxsize=PAGES_AHEAD) for _ in groups]
        applied = _Applied(len(projections), head, progress)

        async def read_pages() -> None:
            async for read in _prefetched(pool, reader, topics, head, page_size):
                page = read
                if until is not None:
                    notes = [n for n in read.notifications if n.event.timestamp <= until]
                    page = Page(last_id=read.last_id, notifications=notes, scanned=read.scanned)
                for inbox in inboxes:
                    await inbox.put(page)
            for inbox in inboxes:
                await inbox.put(None)

        async def write_pages(index: int, inbox: asyncio.Queue[Page | None]) -> None:
            conn = writers[index]
            while (page := await inbox.get()) is not None:
                for mine in groups[index]:
                    projection = projections[mine]
                    await _apply_page(conn, projection, schema, page.notifications, page.last_id)
                    applied.advance(mine, page.last_id)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(read_pages())
                for index, inbox in enumerate(inboxes):
                    group.create_task(write_pages(index, inbox))
        except* Exception as failed:
            # The first failure, as a lone build step would raise it; the rest were cut short.
            raise failed.exceptions[0] from None
    return applied.position


class _Applied:
    """How far every projection of a build got: the slowest one's position."""

    def __init__(self, count: int, head: int, progress: Progress | None) -> None:
        self.positions = [0] * count
        self.position = 0
        self.head = head
        self.progress = progress

    def advance(self, index: int, position: int) -> None:
        self.positions[index] = position
        slowest = min(self.positions)
        if slowest > self.position:
            self.position = slowest
            if self.progress is not None:
                self.progress(slowest, self.head)


async def _apply_page(
    conn: DbConnection,
    projection: Projection,
    schema: str,
    notes: list[Notification],
    last_id: int,
) -> None:
    topics = projection.topics()
    mine = [n for n in notes if n.topic in topics]
    async with conn.transaction():
        await use_schema(conn, schema)
        # Nothing here must survive a crash before the build finishes.
        await conn.execute("SET LOCAL synchronous_commit = off")
        if mine:
            await projection.apply_page(conn, mine)
        await conn.execute(
            f"UPDATE {POSITIONS} SET position = $1, updated_at = now() "  # noqa: S608
            "WHERE projection = $2",
            last_id,
            projection.name,
        )


async def _prefetched(
    pool: asyncpg.Pool,
    reader: LogReader,
    topics: frozenset[str],
    head: int,
    page_size: int,
) -> AsyncIterator[Page]:
    """Pages up to `head`, each read and decoded on a second connection while the
    caller writes the previous one: decoding (our CPU) overlaps the inserts (the
    database's), which is most of what a replay does."""
    async with pool.acquire() as conn:

        def read_after(position: int) -> asyncio.Task[Page]:
            return asyncio.create_task(reader.read(conn, position, page_size, topics, upto=head))

        upcoming = read_after(0)
        try:
            while True:
                page = await upcoming
                if page.scanned == 0:
                    return
                upcoming = read_after(page.last_id)
                yield page
        finally:
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upcoming


async def catch_up_to(
    conn: DbConnection,
    reader: LogReader,
    projection: Projection,
    schema: str,
    upto: int,
) -> None:
    """Page `projection` in `schema` forward to `upto`, inside the caller's transaction."""
    while await apply_next_page(conn, reader, [projection], schema=schema, upto=upto):
        pass


async def rebuild_live(
    pool: asyncpg.Pool,
    reader: LogReader,
    projections: Sequence[Projection],
    *,
    progress: Progress | None = None,
) -> int:
    """Rebuild the live read models from zero: shadow build, then one swap transaction.

    The swap locks the live position rows (a projector tailing them waits),
    brings the shadow up to the head that moved meanwhile, drops the live
    tables and moves the shadow ones into their place, and stores the
    shadow's position and version as the live ones. Returns that position.
    """
    untabled = [p.name for p in projections if not p.tables]
    if untabled:
        raise ValueError(f"cannot swap projections that declare no `tables`: {untabled}")
    shadow = scratch_schema("rebuild")
    try:
        await build(pool, reader, projections, shadow, progress=progress)
        await migrate(pool, projections)  # the live rows to lock, on a fresh database
        async with pool.acquire() as conn, conn.transaction():
            await conn.fetch(
                f"SELECT projection FROM {POSITIONS} WHERE projection = ANY($1) FOR UPDATE",  # noqa: S608
                [p.name for p in projections],
            )
            head = await reader.max_id(conn)
            for projection in projections:
                await catch_up_to(conn, reader, projection, shadow, head)
            await conn.execute("SET LOCAL search_path TO public")
            for projection in projections:
                for table in projection.tables:
                    await conn.execute(f"DROP TABLE IF EXISTS public.{table} CASCADE")
                    await conn.execute(f"ALTER TABLE {shadow}.{table} SET SCHEMA public")
                await conn.execute(
                    f"UPDATE public.{POSITIONS} SET position = s.position, version = s.version, "  # noqa: S608
                    f"updated_at = now() FROM {shadow}.{POSITIONS} s "
                    f"WHERE s.projection = $1 AND public.{POSITIONS}.projection = $1",
                    projection.name,
                )
        return int(head)
    finally:
        await drop_schema(pool, shadow)


@contextlib.asynccontextmanager
async def as_of(
    pool: asyncpg.Pool,
    reader: LogReader,
    projections: Sequence[Projection],
    at: datetime,
) -> AsyncIterator[str]:
    """The read models as the events stamped up to `at` make them, in a temporary schema.

    Yields the schema's name; query it with `SET LOCAL search_path TO <schema>, public`
    (`projections.engine.use_schema`) inside a transaction. Dropped on exit.
    """
    schema = scratch_schema("asof")
    try:
        await build(pool, reader, projections, schema, until=at)
        yield schema
    finally:
        await drop_schema(pool, schema)

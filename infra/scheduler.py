"""One scheduler for every durable timer: saga steps and deferred syncs alike.

A timer is a row of `syncyard_timers`, keyed by kind and key, with a due time.
Every worker process runs one `Scheduler`, which claims due rows of the kinds
it has handlers for `FOR UPDATE SKIP LOCKED` with a lease, so replicas share
the work, one timer has one holder at a time, and a dead holder's timers are
taken over when its lease runs out. A handler answers when to look again (the
row is released with that due time) or None (the row is deleted).

The row is a hint, never the truth: whoever schedules records its events
first and schedules after, and a command redelivered after a crash between
the two schedules again (inserting is idempotent). `wakes` counts outside
nudges (a public token arrived), so a holder releasing a row does not push a
nudge it never saw back to its old due time. A NOTIFY on `WAKE_CHANNEL` cuts
the loop's wait short.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from infra.eventlog.listening import listening
from infra.waiting import wait_for_either
from services.ports import DbConnection

log = logging.getLogger(__name__)

WAKE_CHANNEL = "syncyard_timer_wake"
ERROR_RETRY = timedelta(seconds=1)
# Startup migrations of two replicas at once could collide in the catalog.
_MIGRATION_LOCK = 0x5_C4_ED

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_timers (
    kind text NOT NULL,
    key text NOT NULL,
    due_at timestamptz NOT NULL,
    wakes bigint NOT NULL DEFAULT 0,
    lease_owner text,
    lease_until timestamptz,
    payload bytea NOT NULL DEFAULT '',
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS syncyard_timers_due ON syncyard_timers (due_at);
"""

# Timers kept by earlier versions in a table per kind move here once.
_ADOPT_EARLIER_TABLES = """
DO $$
BEGIN
    IF to_regclass('syncyard_saga_schedule') IS NOT NULL THEN
        INSERT INTO syncyard_timers (kind, key, due_at, wakes)
        SELECT 'saga', saga_id::text, due_at, wakes FROM syncyard_saga_schedule
        ON CONFLICT DO NOTHING;
        DROP TABLE syncyard_saga_schedule;
    END IF;
    IF to_regclass('syncyard_deferrals') IS NOT NULL THEN
        INSERT INTO syncyard_timers (kind, key, due_at, payload)
        SELECT 'deferral', command_id, resume_at,
               convert_to(json_build_object(
                   'op', op, 'tries', tries, 'command', convert_from(command, 'UTF8')::json
               )::text, 'UTF8')
        FROM syncyard_deferrals WHERE sent_at IS NULL
        ON CONFLICT DO NOTHING;
        DROP TABLE syncyard_deferrals;
    END IF;
END $$;
"""

_CLAIM = """
UPDATE syncyard_timers t
SET lease_owner = $1, lease_until = now() + $2 * interval '1 second'
FROM (
    SELECT kind, key FROM syncyard_timers
    WHERE kind = ANY($4::text[]) AND due_at <= now()
      AND (lease_until IS NULL OR lease_until < now())
    ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED
) due
WHERE t.kind = due.kind AND t.key = due.key
RETURNING t.kind, t.key, t.wakes, t.payload
"""
_RELEASE = """
UPDATE syncyard_timers
SET due_at = CASE WHEN wakes <> $4 THEN now() ELSE $5 END, lease_owner = NULL, lease_until = NULL
WHERE kind = $1 AND key = $2 AND lease_owner = $3
"""
_NEXT = """
SELECT extract(epoch FROM min(GREATEST(due_at, COALESCE(lease_until, due_at))) - now())
FROM syncyard_timers WHERE kind = ANY($1::text[])
"""


class Timer(msgspec.Struct, frozen=True, kw_only=True):
    """A due timer as its handler gets it."""

    kind: str
    key: str
    payload: bytes
    wakes: int


# When to look at the timer again, or None when it is done.
TimerHandler = Callable[[Timer], Awaitable[datetime | None]]


class Scheduler:
    """Durable timers in PostgreSQL, claimed under a lease and handed to their kind's handler."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        lease_s: float = 30.0,
        concurrency: int = 64,
        now: Callable[[], datetime],
    ) -> None:
        self.pool = pool
        self.lease_s = lease_s
        self.concurrency = concurrency
        self.now = now
        self.owner = f"scheduler-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._handlers: dict[str, TimerHandler] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, kind: str, handler: TimerHandler) -> None:
        """Fire `kind`'s timers through `handler`; kinds without one are left to other processes."""
        self._handlers[kind] = handler

    async def setup(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(SCHEMA)
            await conn.execute(_ADOPT_EARLIER_TABLES)

    # -- timers ----------------------------------------------------------------
    async def schedule(self, kind: str, key: str, due_at: datetime, payload: bytes = b"") -> None:
        """Fire at `due_at`, or earlier if the same timer is already set to.

        Setting a timer again counts as a nudge: a holder firing it right now
        looks again instead of deleting it, so a timer set while its last firing
        is finishing is never lost.
        """
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO syncyard_timers (kind, key, due_at, payload) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (kind, key) DO UPDATE SET "
                "due_at = LEAST(syncyard_timers.due_at, EXCLUDED.due_at), "
                "wakes = syncyard_timers.wakes + 1, payload = EXCLUDED.payload",
                kind,
                key,
                due_at,
                payload,
            )
            await conn.execute(f"NOTIFY {WAKE_CHANNEL}")

    async def wake(self, kind: str, key: str) -> None:
        """Fire now: something the timer's owner waits for has arrived."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE syncyard_timers SET due_at = now(), wakes = wakes + 1 "
                "WHERE kind = $1 AND key = $2",
                kind,
                key,
            )
            await conn.execute(f"NOTIFY {WAKE_CHANNEL}")

    async def renew(self, kind: str, key: str, owner: str) -> bool:
        """Extend `owner`'s lease; False if another holder has the timer now."""
        status = await self.pool.execute(
            "UPDATE syncyard_timers SET lease_until = now() + $4 * interval '1 second' "
            "WHERE kind = $1 AND key = $2 AND lease_owner = $3",
            kind,
            key,
            owner,
            self.lease_s,
        )
        return bool(status.endswith(" 1"))

    # -- the loop --------------------------------------------------------------
    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.setup()
        async with listening(self.pool, WAKE_CHANNEL, self._on_notify):
            try:
                await self._claim_until(stop)
            finally:
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _claim_until(self, stop: asyncio.Event) -> None:
        kinds = sorted(self._handlers)
        while not stop.is_set():
            self._wake.clear()
            free = self.concurrency - len(self._tasks)
            rows = (
                await self.pool.fetch(_CLAIM, self.owner, self.lease_s, free, kinds) if free else []
            )
            for row in rows:
                timer = Timer(
                    kind=row["kind"],
                    key=row["key"],
                    payload=bytes(row["payload"]),
                    wakes=int(row["wakes"]),
                )
                task = asyncio.create_task(self._fire(timer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(lambda _: self._wake.set())
            if rows and len(rows) == free:
                continue
            gap: Any = await self.pool.fetchval(_NEXT, kinds)
            sleep = 1.0 if gap is None else max(0.01, min(1.0, float(gap)))
            await wait_for_either(stop, self._wake, sleep)

    async def _fire(self, timer: Timer) -> None:
        due: datetime | None
        try:
            due = await self._handlers[timer.kind](timer)
        except Exception:
            log.exception("timer %s %s: its handler failed; trying again", timer.kind, timer.key)
            due = self.now() + ERROR_RETRY
        if due is not None:
            await self.pool.execute(_RELEASE, timer.kind, timer.key, self.owner, timer.wakes, due)
            return
        deleted = await self.pool.execute(
            "DELETE FROM syncyard_timers "
            "WHERE kind = $1 AND key = $2 AND lease_owner = $3 AND wakes = $4",
            timer.kind,
            timer.key,
            self.owner,
            timer.wakes,
        )
        if deleted.endswith(" 0"):  # nudged or set again meanwhile: look again now
            await self.pool.execute(
                _RELEASE, timer.kind, timer.key, self.owner, timer.wakes, self.now()
            )


async def timer_of(conn: DbConnection, kind: str, key: str) -> dict[str, Any] | None:
    """A timer's row (due time, lease, wakes), or None once it has fired for good."""
    row = await conn.fetchrow(
        "SELECT due_at, lease_owner, lease_until, wakes FROM syncyard_timers "
        "WHERE kind = $1 AND key = $2",
        kind,
        key,
    )
    return dict(row) if row is not None else None

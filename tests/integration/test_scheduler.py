"""One scheduler for every durable timer: sagas and deferred syncs share its table and loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from events.results import CommandResult
from infra.scheduler import Scheduler, Timer, timer_of
from services.resilience.retry import DEFAULT_RETRY, RetryPolicy
from tests.support.harness import (
    client,
    eventually,
    inject_fault,
    register,
    running_syncyard,
    settings_for,
    stored_events,
    sync,
)

pytestmark = pytest.mark.integration

QUICK_RETRY = {**DEFAULT_RETRY, "provider_down": RetryPolicy(tries=4, base_s=0.5, factor=1.0)}


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as p:
        yield p


async def _run_until(scheduler: Scheduler, done: asyncio.Event, timeout: float = 10.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.create_task(scheduler.run(stop))
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        stop.set()
        await loop


async def test_a_timer_fires_once_when_due_and_is_gone_after(pool: asyncpg.Pool) -> None:
    scheduler = Scheduler(pool, now=_now)
    fired: list[Timer] = []
    done = asyncio.Event()

    async def handler(timer: Timer) -> datetime | None:
        fired.append(timer)
        done.set()
        return None

    scheduler.handle("test", handler)
    await scheduler.setup()
    await scheduler.schedule("test", "k1", _now() + timedelta(milliseconds=200), b"payload")

    await _run_until(scheduler, done)

    assert [(t.kind, t.key, t.payload) for t in fired] == [("test", "k1", b"payload")]
    async with pool.acquire() as conn:
        assert await timer_of(conn, "test", "k1") is None


async def test_a_timer_set_again_while_it_fires_is_not_lost(pool: asyncpg.Pool) -> None:
    scheduler = Scheduler(pool, now=_now)
    firings = 0
    done = asyncio.Event()

    async def handler(timer: Timer) -> datetime | None:
        nonlocal firings
        firings += 1
        if firings == 1:
            # Someone sets the same timer while its first firing is finishing.
            await scheduler.schedule("test", timer.key, _now())
        else:
            done.set()
        return None

    scheduler.handle("test", handler)
    await scheduler.setup()
    await scheduler.schedule("test", "again", _now())

    await _run_until(scheduler, done)

    assert firings == 2


async def test_a_process_fires_only_the_kinds_it_has_handlers_for(pool: asyncpg.Pool) -> None:
    scheduler = Scheduler(pool, now=_now)
    done = asyncio.Event()

    async def handler(timer: Timer) -> datetime | None:
        done.set()
        return None

    scheduler.handle("mine", handler)
    await scheduler.setup()
    await scheduler.schedule("theirs", "t", _now())
    await scheduler.schedule("mine", "m", _now())

    await _run_until(scheduler, done)

    async with pool.acquire() as conn:
        assert await timer_of(conn, "theirs", "t") is not None
        assert await timer_of(conn, "mine", "m") is None


async def test_timers_kept_in_the_earlier_tables_are_adopted_once(pool: asyncpg.Pool) -> None:
    saga_id = uuid.uuid4()
    due = _now() + timedelta(minutes=5)
    command = msgspec.json.encode({"command_id": "old-1", "op": "sync.transactions"})
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE syncyard_saga_schedule (saga_id uuid PRIMARY KEY, kind text NOT NULL, "
            "due_at timestamptz NOT NULL, wakes bigint NOT NULL DEFAULT 0, lease_owner text, "
            "lease_until timestamptz)"
        )
        await conn.execute(
            "INSERT INTO syncyard_saga_schedule VALUES ($1, 'link', $2, 3, NULL, NULL)",
            saga_id,
            due,
        )
        await conn.execute(
            "CREATE TABLE syncyard_deferrals (command_id text PRIMARY KEY, connection_id uuid "
            "NOT NULL, op text NOT NULL, command bytea NOT NULL, tries int NOT NULL, "
            "resume_at timestamptz NOT NULL, sent_at timestamptz)"
        )
        await conn.execute(
            "INSERT INTO syncyard_deferrals VALUES "
            "('old-1', $1, 'sync.transactions', $2, 2, $3, NULL), "
            "('old-2', $1, 'sync.transactions', $2, 1, $3, now())",
            uuid.uuid4(),
            command,
            due,
        )

    scheduler = Scheduler(pool, now=_now)
    await scheduler.setup()
    await scheduler.setup()  # a second replica starting finds nothing more to adopt

    async with pool.acquire() as conn:
        saga = await timer_of(conn, "saga", str(saga_id))
        assert saga is not None and saga["due_at"] == due and saga["wakes"] == 3
        rows = await conn.fetch("SELECT key, payload FROM syncyard_timers WHERE kind = 'deferral'")
        assert [r["key"] for r in rows] == ["old-1"]  # the sent one is not sent again
        payload = msgspec.json.decode(bytes(rows[0]["payload"]))
        assert payload["op"] == "sync.transactions" and payload["tries"] == 2
        assert payload["command"] == {"command_id": "old-1", "op": "sync.transactions"}
        for table in ("syncyard_saga_schedule", "syncyard_deferrals"):
            assert await conn.fetchval("SELECT to_regclass($1)", table) is None


async def test_deferred_syncs_come_back_in_a_process_that_runs_only_the_worker(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = msgspec.structs.replace(settings_for(sandbox), retry=QUICK_RETRY)
    worker_only = frozenset({"worker"})
    async with (
        running_syncyard(settings, nats_url, database_url, worker_only),
        client(nats_url) as upstream,
    ):
        assert (await upstream.send(register("acct-w", "plaid"))).success
        await inject_fault(
            sandbox,
            provider="plaid",
            endpoint="/transactions/sync",
            status=500,
            error_code="INSTITUTION_DOWN",
            count=1,
        )
        await upstream.publish(sync("acct-w", "worker-only-1"))
        answers = await eventually(
            lambda: _results(upstream.results, "worker-only-1"), lambda got: len(got) >= 2
        )
    assert answers[0].deferred_until is not None and answers[-1].success


async def test_a_deferral_whose_timer_was_lost_is_set_again_by_the_commands_redelivery(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    retry = {**DEFAULT_RETRY, "provider_down": RetryPolicy(tries=3, base_s=2.0, factor=1.0)}
    settings = msgspec.structs.replace(settings_for(sandbox), retry=retry)
    async with running_syncyard(settings, nats_url, database_url) as runtime:
        assert (await runtime.execute(register("acct-l", "plaid"))).success
        await inject_fault(
            sandbox,
            provider="plaid",
            endpoint="/transactions/sync",
            status=500,
            error_code="INSTITUTION_DOWN",
            count=1,
        )
        command = sync("acct-l", "lost-timer-1")
        first = await runtime.execute(command)
        assert first.deferred_until is not None
        # A crash between recording the deferral and setting its timer leaves none.
        async with runtime.pool.acquire() as conn:
            await conn.execute("DELETE FROM syncyard_timers WHERE kind = 'deferral'")

        redelivered = await runtime.execute(command)

        assert redelivered.duplicate and redelivered.deferred_until == first.deferred_until

        async def completed() -> list[str]:
            return [t for _, t, _ in await stored_events(database_url)]

        await eventually(completed, lambda topics: "SyncCompleted" in topics, timeout=20)


async def _results(results: dict[str, list[CommandResult]], command_id: str) -> list[CommandResult]:
    return list(results.get(command_id, []))

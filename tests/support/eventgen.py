"""Stored events made fast: a realistic mix, encrypted as the store's mapper would, COPYed in.

The command path (worker, orchestrator, eventsourcing's recorder) writes
~1,000-4,000 events/s here; a replay benchmark needs a million events, so
they are generated and written straight into the events table with COPY.
The mix follows what commands record: per sync one `ConnectionAttempted`
and one `SyncCompleted`; one sync in ten fails over (a failed attempt and a
`ProviderFailed` first); one in fifty ends in `SyncFailed`; a breaker opens
and closes now and then.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from events.base import DomainEvent
from events.breaker import BreakerClosed, BreakerHalfOpened, BreakerOpened
from events.connection import (
    ConnectionAttempted,
    ConnectionRegistered,
    ProviderFailed,
    ProviderLinked,
    SyncCompleted,
    SyncFailed,
)
from events.errors import ErrorInfo
from infra.bootstrap import pg_parts
from infra.eventstore import EVENTS_TABLE, SyncyardApplication, library_env
from services.connections.state import connection_id_for, credential_id_for
from services.resilience.domain import breaker_id_for

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DOWN = ErrorInfo(
    code="INSTITUTION_DOWN", message="institution down", type="provider_down", retryable=True
)


def create_events_table(database_url: str, cipher_key: str) -> None:
    """The store's table, made by the library itself (as `open_runtime` does)."""
    SyncyardApplication(library_env(pg_parts(database_url), cipher_key)).close()


class _Stream:
    def __init__(self, originator_id: uuid.UUID) -> None:
        self.id = originator_id
        self.version = 0

    def next(self) -> dict[str, Any]:
        self.version += 1
        return {"originator_id": self.id, "originator_version": self.version}


def generate(
    count: int, *, connections: int = 1000, step: timedelta = timedelta(milliseconds=1)
) -> Iterator[DomainEvent]:
    """`count` events (exactly), timestamps `step` apart from START, deterministic."""
    rng = random.Random(7)
    clock = iter(START + step * i for i in range(count))
    made = 0
    streams: list[_Stream] = []
    breaker = _Stream(breaker_id_for("plaid", "US"))
    while made < count:
        batch: list[DomainEvent] = []
        if len(streams) < connections:
            index = len(streams)
            stream = _Stream(connection_id_for("bench", f"acct-{index}"))
            streams.append(stream)
            now = next(clock)
            batch += [
                ConnectionRegistered(
                    **stream.next(),
                    timestamp=now,
                    space_id="bench",
                    account_id=f"acct-{index}",
                    institution_id=None,
                    region="US",
                ),
                ProviderLinked(
                    **stream.next(),
                    timestamp=now,
                    command_id=f"reg-{index}",
                    provider="plaid",
                    item_id=f"item-{index}",
                    credential_id=credential_id_for("bench", f"reg-{index}"),
                ),
            ]
        else:
            batch += _sync(rng.choice(streams), rng, next(clock), made)
        if rng.random() < 0.0005:
            now = next(clock)
            batch += [
                BreakerOpened(
                    **breaker.next(),
                    timestamp=now,
                    provider="plaid",
                    region="US",
                    reason="5 failures",
                    open_until=now + timedelta(seconds=60),
                ),
                BreakerHalfOpened(**breaker.next(), timestamp=now, provider="plaid", region="US"),
                BreakerClosed(
                    **breaker.next(), timestamp=now, provider="plaid", region="US", successes=2
                ),
            ]
        yield from batch[: count - made]
        made += len(batch)


def _sync(stream: _Stream, rng: random.Random, now: datetime, n: int) -> list[DomainEvent]:
    command: dict[str, Any] = {"command_id": f"sync-{n}", "op": "sync.transactions"}
    fails_over, fails = rng.random() < 0.1, rng.random() < 0.02
    events: list[DomainEvent] = []
    if fails_over:
        events += [
            ConnectionAttempted(
                **stream.next(),
                timestamp=now,
                **command,
                provider="plaid",
                region="US",
                attempt=1,
                failover=False,
                outcome="failure",
                response_time_ms=rng.uniform(5, 50),
                error_code=DOWN.code,
                error_message=DOWN.message,
                error_type=DOWN.type,
            ),
            ProviderFailed(
                **stream.next(),
                timestamp=now,
                **command,
                provider="plaid",
                region="US",
                error=DOWN,
                response_time_ms=20.0,
            ),
        ]
    provider = "mx" if fails_over else "plaid"
    if fails:
        return [
            *events,
            SyncFailed(
                **stream.next(),
                timestamp=now,
                **command,
                provider=provider,
                failover_used=fails_over,
                attempts=len(events) // 2 + 1,
                response_time_ms=30.0,
                error=DOWN,
            ),
        ]
    return [
        *events,
        ConnectionAttempted(
            **stream.next(),
            timestamp=now,
            **command,
            provider=provider,
            region="US",
            attempt=len(events) // 2 + 1,
            failover=fails_over,
            outcome="success",
            response_time_ms=rng.uniform(50, 400),
        ),
        SyncCompleted(
            **stream.next(),
            timestamp=now,
            **command,
            provider=provider,
            failover_used=fails_over,
            attempts=len(events) // 2 + 1,
            response_time_ms=rng.uniform(50, 400),
            summary={"added": rng.randint(0, 5)},
        ),
    ]


async def write_events(
    database_url: str, cipher_key: str, count: int, *, chunk: int = 20_000, **kw: Any
) -> int:
    """Generate and COPY `count` events into the store's table; returns how many."""
    from infra.eventstore import store_mapper  # noqa: PLC0415 - keeps bench imports light

    await asyncio.to_thread(create_events_table, database_url, cipher_key)
    mapper = store_mapper(cipher_key)
    conn = await asyncpg.connect(database_url)
    try:
        rows: list[tuple[Any, ...]] = []
        for event in generate(count, **kw):
            stored = mapper.to_stored_event(event)
            rows.append(
                (stored.originator_id, stored.originator_version, stored.topic, stored.state)
            )
            if len(rows) >= chunk:
                await _copy(conn, rows)
                rows = []
        if rows:
            await _copy(conn, rows)
    finally:
        await conn.close()
    return count


async def _copy(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table(
        EVENTS_TABLE,
        records=rows,
        columns=["originator_id", "originator_version", "topic", "state"],
    )

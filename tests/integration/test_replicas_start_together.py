"""Replicas started at the same moment on an empty database all come up.

Without the schema lock, the eventsourcing library's table and function
creation raced in PostgreSQL's catalog: all but one replica crashed with
"tuple concurrently updated" or a duplicate pg_type row.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from infra.bootstrap import pg_parts
from infra.eventstore import (
    EVENTS_TABLE,
    SCHEMA_LOCK,
    SyncyardApplication,
    library_env,
    open_application,
)
from tests.support.harness import CIPHER_KEY

pytestmark = pytest.mark.integration

REPLICAS = 4


async def test_replicas_opening_the_store_at_once_on_an_empty_database_all_succeed(
    database_url: str,
) -> None:
    env = library_env(pg_parts(database_url), CIPHER_KEY)

    apps = await asyncio.gather(*(open_application(database_url, env) for _ in range(REPLICAS)))

    assert all(isinstance(app, SyncyardApplication) for app in apps)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", EVENTS_TABLE)
        # The lock was released: another session takes it at once.
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", SCHEMA_LOCK)
    finally:
        await conn.close()
    for app in apps:
        await asyncio.to_thread(app.close)

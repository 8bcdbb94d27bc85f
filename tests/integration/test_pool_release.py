"""A LISTENing loop always hands its connection back, even when the database drops it.

A connection left out of the pool makes `Pool.close()` wait forever at shutdown.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from asyncpg.pool import PoolConnectionProxy

from infra import bootstrap
from infra.eventlog.listening import listening
from tests.support.harness import eventually

pytestmark = pytest.mark.integration

# Not a timing goal: a bound that turns a hang into a failure with a message.
CLOSE_BOUND_S = 30


async def session_count(database_url: str, pid: int) -> int:
    admin = await asyncpg.connect(database_url)
    try:
        return int(
            await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
        )
    finally:
        await admin.close()


async def terminate_backend(database_url: str, pid: int) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def kill_session(database_url: str, conn: PoolConnectionProxy) -> None:
    """The server ends `conn`'s session, as a restart does; returns once the client knows."""
    gone = asyncio.Event()
    conn.add_termination_listener(lambda *_: gone.set())
    await terminate_backend(database_url, conn.get_server_pid())
    await asyncio.wait_for(gone.wait(), CLOSE_BOUND_S)


async def test_notifications_reach_the_callback_while_listening(database_url: str) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        async with listening(pool, "wake_up", lambda *args: heard.put_nowait(args[3])):
            await pool.execute("SELECT pg_notify('wake_up', 'page 7')")
            assert await asyncio.wait_for(heard.get(), CLOSE_BOUND_S) == "page 7"
        # Handed back without its LISTEN: a later NOTIFY reaches nobody.
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0


async def test_a_session_the_database_killed_goes_back_and_the_pool_still_closes(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    async with listening(pool, "wake_up", lambda *_: None) as conn:
        await kill_session(database_url, conn)
    assert await pool.fetchval("SELECT 1") == 1  # a fresh session replaces it
    await asyncio.wait_for(pool.close(), CLOSE_BOUND_S)


async def test_a_loop_that_fails_on_a_dead_session_still_hands_it_back(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)

    async def follow() -> None:
        async with listening(pool, "wake_up", lambda *_: None) as conn:
            await kill_session(database_url, conn)
            await conn.fetchval("SELECT 1")  # what a follower's next page read meets

    with pytest.raises(asyncpg.InterfaceError, match="released back to the pool"):
        await follow()
    await asyncio.wait_for(pool.close(), CLOSE_BOUND_S)


async def test_shutdown_does_not_wait_forever_for_a_connection_nobody_returns(
    database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap, "POOL_CLOSE_TIMEOUT_S", 0.5)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    leaked = await pool.acquire()  # and never released
    pid = leaked.get_server_pid()
    await asyncio.wait_for(bootstrap.close_pool(pool, "followers"), CLOSE_BOUND_S)
    assert "pool followers: not closed within 0.5s (1 connections were out" in caplog.text
    await eventually(lambda: session_count(database_url, pid), lambda n: n == 0)
    with pytest.raises(asyncpg.InterfaceError):
        await pool.fetchval("SELECT 1")  # closed for good

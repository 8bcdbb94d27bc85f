"""The HTTP API has its own small pool, whose queries PostgreSQL cuts off after a few seconds."""

from __future__ import annotations

import contextlib

import aiohttp
import asyncpg
import msgspec
import pytest

from infra.bootstrap import Runtime
from tests.support.harness import AUTH

pytestmark = pytest.mark.integration


async def test_the_api_answers_while_the_followers_pool_is_exhausted(syncyard: Runtime) -> None:
    assert syncyard.api_pool is not None and syncyard.api_pool is not syncyard.pool
    async with contextlib.AsyncExitStack() as held:
        # Every connection the relay, projector and sagas share, taken (the
        # followers' listening loops already hold some of them).
        with contextlib.suppress(TimeoutError):
            while True:
                await held.enter_async_context(syncyard.pool.acquire(timeout=0.5))
        assert syncyard.pool.get_size() == syncyard.pool.get_max_size()
        assert syncyard.pool.get_idle_size() == 0

        timeout = aiohttp.ClientTimeout(total=10)
        url = f"{syncyard.http_url}/v1/providers/health?region=US"
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, headers=AUTH) as resp,
        ):
            assert resp.status == 200, await resp.text()
            msgspec.json.decode(await resp.read())


async def test_the_api_pools_queries_have_a_statement_timeout(syncyard: Runtime) -> None:
    assert syncyard.api_pool is not None
    async with syncyard.api_pool.acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "5s"
        with pytest.raises(asyncpg.QueryCanceledError):
            await conn.execute("SELECT pg_sleep(6)")
    # The per-command pool is bounded too; the followers' is not (catch-up pages).
    async with syncyard.store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "30s"

"""`feed.read` right after a first start: the projector may not have made its table yet."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from infra.feed_reader import ProjectedFeedReader
from projections.feed import SCHEMA

pytestmark = pytest.mark.integration


async def test_a_read_before_the_feed_table_exists_answers_empty_not_an_error(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        reader = ProjectedFeedReader(pool, wait_s=0.2)
        entries = await reader.read(uuid.uuid4(), since=0, limit=10, reached=3)
        assert entries == []
    finally:
        await pool.close()


async def test_a_read_waiting_for_the_projector_sees_the_table_made_during_its_wait(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        reader = ProjectedFeedReader(pool, wait_s=30.0)
        connection_id = uuid.uuid4()
        read = asyncio.ensure_future(reader.read(connection_id, since=0, limit=10, reached=0))
        await asyncio.sleep(0.1)
        assert not read.done()  # the table is missing: it waits rather than failing
        async with pool.acquire() as conn:
            await conn.execute(SCHEMA)
        assert await asyncio.wait_for(read, 10.0) == []
    finally:
        await pool.close()

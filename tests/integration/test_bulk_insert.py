"""`insert_new_rows`: a small page row by row, a large one by COPY, the same rows either way."""

from __future__ import annotations

import asyncpg
import pytest

from projections.bulk import STAGED_FROM_ROWS, insert_new_rows

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("size", [3, STAGED_FROM_ROWS - 1, STAGED_FROM_ROWS, 1000])
async def test_a_page_inserts_its_new_rows_and_leaves_rows_already_stored_as_they_were(
    database_url: str, size: int
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, label text NOT NULL)")
        await conn.execute("INSERT INTO t VALUES (1, 'stored before')")
        rows = [(i, f"row {i}") for i in range(1, size + 1)]
        async with conn.transaction():
            await insert_new_rows(conn, "t", rows, version=1)
            # A second page of the same transaction (a rebuild's last catch-up)
            # inserts only its own rows.
            await insert_new_rows(conn, "t", [(size + 1, "next page")], version=1)
        stored = await conn.fetch("SELECT id, label FROM t ORDER BY id")
        assert [tuple(r) for r in stored] == [
            (1, "stored before"),
            *rows[1:],
            (size + 1, "next page"),
        ]
    finally:
        await conn.close()


async def test_an_empty_page_writes_nothing(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE t (id bigint PRIMARY KEY)")
        async with conn.transaction():
            await insert_new_rows(conn, "t", [], version=1)
        assert await conn.fetchval("SELECT count(*) FROM t") == 0
    finally:
        await conn.close()

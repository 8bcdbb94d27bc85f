"""Writing a page's new rows at once: COPY into a staging table, then one INSERT … SELECT.

`executemany` sends, and PostgreSQL answers, one statement per row; on replay
(thousands of rows a page) those per-row messages cost more than the rows'
encoding. COPY sends the page as one stream, and one `INSERT … SELECT … ON
CONFLICT DO NOTHING` keeps a replayed row a no-op, as the per-row insert did.

A small page (live tailing: a few dozen rows) goes the other way. Staging has
a fixed cost, the temporary table's statement, the COPY, the move and the
table's truncation at commit: measured on the embedded PostgreSQL, ~400 µs
of the server's CPU and ~150 µs of ours per page and table more than
`executemany` for 3 to 30 rows, the two even at ~300 rows, COPY ahead at 1,000.

The staging table is a temporary one per connection, kept for the session and
emptied at each commit, so live tailing does not create one per page. It is
found before any schema's tables (temporary tables come first in the search
path) and takes its columns from the table `LIKE` names in the transaction's
schema, so the same call writes the live, replay and as-of tables. Its name
carries the read model's version: a changed table gets a fresh staging table
on a connection that outlived the change. Rows leave it as they are inserted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.ports import DbConnection

# Below this many rows a page is inserted row by row (see above).
STAGED_FROM_ROWS = 256


async def insert_new_rows(
    conn: DbConnection,
    table: str,
    rows: Sequence[tuple[Any, ...]],
    *,
    version: int,
) -> None:
    """Insert `rows` (every column of `table`, in order) but those whose key is stored already.

    Must run inside the caller's transaction: the staging rows go at its commit.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("insert_new_rows needs a transaction: its staging rows go at commit")
    if not rows:
        return
    if len(rows) < STAGED_FROM_ROWS:
        values = ", ".join(f"${i}" for i in range(1, len(rows[0]) + 1))
        await conn.executemany(
            f"INSERT INTO {table} VALUES ({values}) ON CONFLICT DO NOTHING",  # noqa: S608 - our name
            rows,
        )
        return
    staging = f"staged_{table}_v{version}"
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table(staging, records=rows)
    # Moved, not copied: a transaction that writes several pages (a rebuild's
    # final catch-up) must not insert the earlier pages' rows again.
    await conn.execute(
        f"WITH moved AS (DELETE FROM {staging} RETURNING *) "  # noqa: S608 - our names
        f"INSERT INTO {table} SELECT * FROM moved ON CONFLICT DO NOTHING"
    )

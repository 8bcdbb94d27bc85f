"""Verification: rebuild read models into shadow tables and compare them with the live ones.

Row for row, both ways (`EXCEPT ALL`), on every table a projection declares.
Both sides are compared at the same log position: the shadow is built up to
the live positions seen at the start, then, in one REPEATABLE READ
transaction, each shadow table is paged forward to where its live twin stands
in that transaction's snapshot, and compared with the live table as of the
same snapshot. A read model's rows and its position commit together, so the
snapshot is consistent without locking anything live: the projector goes on
tailing while an auditor verifies.

Two kinds of column are compared loosely, on purpose: floating-point sums
depend on how events were grouped into pages (live pages and replay pages
differ), so double precision is compared at single precision (about seven
significant digits); `json` has no equality, so it is compared as `jsonb`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from projections.engine import POSITIONS, Projection, migrate
from projections.rebuild import Progress, build, catch_up_to, drop_schema, scratch_schema
from services.ports import DbConnection, LogReader


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    """One row found on one side only (as many times as it is missing from the other)."""

    projection: str
    table: str
    side: str  # "live only" or "rebuilt only"
    row: dict[str, Any]


async def verify(
    pool: asyncpg.Pool,
    reader: LogReader,
    projections: Sequence[Projection],
    *,
    progress: Progress | None = None,
) -> list[Difference]:
    """Every row that differs between the live read models and a fresh rebuild."""
    untabled = [p.name for p in projections if not p.tables]
    if untabled:
        raise ValueError(f"cannot verify projections that declare no `tables`: {untabled}")
    await migrate(pool, projections)
    names = [p.name for p in projections]
    live_at = {
        row["projection"]: row["position"]
        for row in await pool.fetch(
            f"SELECT projection, position FROM {POSITIONS} WHERE projection = ANY($1)",  # noqa: S608
            names,
        )
    }
    shadow = scratch_schema("verify")
    try:
        await build(
            pool, reader, projections, shadow, upto=min(live_at.values()), progress=progress
        )
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(
                f"SELECT projection, position FROM public.{POSITIONS} "  # noqa: S608
                "WHERE projection = ANY($1)",
                names,
            )
            snapshot_at = {row["projection"]: row["position"] for row in rows}
            differences: list[Difference] = []
            for projection in projections:
                if snapshot_at[projection.name] < live_at[projection.name]:
                    raise RuntimeError(
                        f"projection {projection.name} went back to an earlier position while "
                        "being verified (rebuilt meanwhile?): verify again"
                    )
                await catch_up_to(conn, reader, projection, shadow, snapshot_at[projection.name])
                for table in projection.tables:
                    differences += await _compare(conn, projection.name, table, shadow)
            return differences
    finally:
        await drop_schema(pool, shadow)


async def _compare(
    conn: DbConnection, projection: str, table: str, shadow: str
) -> list[Difference]:
    columns = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    if not columns:
        raise LookupError(f"projection {projection}: no live table {table!r}")
    select = ", ".join(_comparable(row["column_name"], row["data_type"]) for row in columns)
    found = []
    for side, first, second in (
        ("live only", "public", shadow),
        ("rebuilt only", shadow, "public"),
    ):
        rows = await conn.fetch(
            f"SELECT row_to_json(d)::text AS row FROM (SELECT {select} FROM {first}.{table} "  # noqa: S608
            f"EXCEPT ALL SELECT {select} FROM {second}.{table}) d"
        )
        found += [
            Difference(projection=projection, table=table, side=side, row=json.loads(r["row"]))
            for r in rows
        ]
    return found


def _comparable(column: str, data_type: str) -> str:
    name = '"' + column.replace('"', '""') + '"'
    if data_type == "double precision":
        return f"{name}::real AS {name}"
    if data_type == "json":
        return f"{name}::jsonb AS {name}"
    return name

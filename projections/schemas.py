"""Where a projection's tables live: the live schema, or another one chosen per transaction.

Replay, verification and as-of builds create the same (unqualified) tables
in a schema of their own and point a transaction at it with `SET LOCAL
search_path`; each schema has its own position table.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from services.ports import DbConnection

POSITIONS = "syncyard_projection_position"
DEFAULT_EVENTS_TABLE = "syncyard_events"  # infra.eventstore.EVENTS_TABLE; infra may pass its own
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def checked_schema(name: str) -> str:
    """A schema name safe to interpolate (it cannot be a bind parameter)."""
    if not _SCHEMA_NAME.match(name):
        raise ValueError(f"schema name {name!r}: lower-case letters, digits and _ only")
    return name


async def use_schema(conn: DbConnection, schema: str | None) -> None:
    """Point this transaction's unqualified table names at `schema` (the events stay in public)."""
    if schema is not None:
        await conn.execute(f"SET LOCAL search_path TO {checked_schema(schema)}, public")


class Borrowed:
    """`async with` a pool's connection, or a connection the caller already holds."""

    def __init__(self, pool_or_conn: asyncpg.Pool | DbConnection) -> None:
        self.source = pool_or_conn
        self.acquired: Any = None

    async def __aenter__(self) -> DbConnection:
        if isinstance(self.source, asyncpg.Pool):
            self.acquired = await self.source.acquire()
            return self.acquired  # type: ignore[no-any-return]
        return self.source

    async def __aexit__(self, *exc: object) -> None:
        if self.acquired is not None and isinstance(self.source, asyncpg.Pool):
            await self.source.release(self.acquired)

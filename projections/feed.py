"""Read model `feed`: every account's feed entries, by position.

Built from `FeedAppended` events; what `feed.read` and
`GET /v1/accounts/{account_id}/transactions/changes` answer. An entry is
stored as the contract encodes it, so a reader returns exactly what the
sync's result carried.
"""

from __future__ import annotations

from uuid import UUID

import msgspec

from events.feed import FeedAppended, FeedEntry
from projections.engine import Projection
from services.ports import DbConnection, Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS feed (
    connection_id uuid NOT NULL,
    position bigint NOT NULL,
    command_id text NOT NULL,
    entry bytea NOT NULL,
    PRIMARY KEY (connection_id, position)
);
"""

_entry_decoder = msgspec.json.Decoder(FeedEntry)


class FeedProjection(Projection):
    name = "feed"
    schema = SCHEMA
    tables = ("feed",)
    handles = (FeedAppended,)

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        rows = [
            (note.originator_id, entry.position, event.command_id, msgspec.json.encode(entry))
            for note in notes
            if isinstance(event := note.event, FeedAppended)
            for entry in event.entries
        ]
        if rows:
            # A page applied twice (exactly-once guards it, but a rebuild may
            # overlap) writes the same rows: positions are the entries' own.
            await conn.executemany(
                "INSERT INTO feed VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", rows
            )


async def read_feed(
    conn: DbConnection, connection_id: UUID, *, since: int, limit: int
) -> list[FeedEntry]:
    """The account's entries after position `since`, at most `limit`, in order."""
    rows = await conn.fetch(
        "SELECT entry FROM feed WHERE connection_id = $1 AND position > $2 "
        "ORDER BY position LIMIT $3",
        connection_id,
        since,
        limit,
    )
    return [_entry_decoder.decode(row["entry"]) for row in rows]


async def last_position(conn: DbConnection, connection_id: UUID) -> int:
    """The last position the read model holds for the account (0: none yet)."""
    value = await conn.fetchval(
        "SELECT COALESCE(MAX(position), 0) FROM feed WHERE connection_id = $1", connection_id
    )
    return int(value)

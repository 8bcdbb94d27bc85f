"""Read model `linked_items`: which connection holds which item at which provider.

How a provider's webhook about an item (not about a link flow) finds the
connections to tell: `infra/http/webhooks.py` asks it through
`services.ports.LinkedItemsPort`. One row per connection and provider (a
connection holds one link per provider), from `ProviderLinked` (a new item
replaces the provider's old one) and `ProviderUnlinked` (gone, if it is still
that item). Item ids are the providers' own (a Plaid item, an MX member, a
Belvo link): no secret.
"""

from __future__ import annotations

from uuid import UUID

from events.connection import ProviderLinked, ProviderUnlinked
from projections.engine import Projection
from services.ports import DbConnection, Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS linked_items (
    connection_id uuid NOT NULL,
    provider text NOT NULL,
    item_id text NOT NULL,
    last_event bigint NOT NULL,
    PRIMARY KEY (connection_id, provider)
);
CREATE INDEX IF NOT EXISTS linked_items_by_item ON linked_items (provider, item_id);
"""

# A row changes only for an event newer than the one that set it: a page applied
# again (a rebuild overlapping the live one) leaves it as it was.
_LINK = """
INSERT INTO linked_items AS l (connection_id, provider, item_id, last_event)
VALUES ($1, $2, $3, $4)
ON CONFLICT (connection_id, provider) DO UPDATE
SET item_id = EXCLUDED.item_id, last_event = EXCLUDED.last_event
WHERE l.last_event < EXCLUDED.last_event
"""
_UNLINK = """
DELETE FROM linked_items
WHERE connection_id = $1 AND provider = $2 AND item_id = $3 AND last_event < $4
"""


class LinkedItemsProjection(Projection):
    name = "linked_items"
    schema = SCHEMA
    tables = ("linked_items",)
    handles = (ProviderLinked, ProviderUnlinked)

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        # In log order, one statement each: links change rarely (one per linking).
        for note in notes:
            event = note.event
            if isinstance(event, ProviderLinked):
                args = (note.originator_id, event.provider, event.item_id, note.id)
                await conn.execute(_LINK, *args)
            elif isinstance(event, ProviderUnlinked):
                args = (note.originator_id, event.provider, event.item_id, note.id)
                await conn.execute(_UNLINK, *args)


async def connections_holding(conn: DbConnection, provider: str, item_id: str) -> list[UUID]:
    """Every connection whose link at `provider` is `item_id`, oldest link first."""
    rows = await conn.fetch(
        "SELECT connection_id FROM linked_items WHERE provider = $1 AND item_id = $2 "
        "ORDER BY last_event",
        provider,
        item_id,
    )
    return [row["connection_id"] for row in rows]

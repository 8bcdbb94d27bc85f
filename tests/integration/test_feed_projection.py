"""The `feed` read model writes a page's entries in one statement: each entry once, as encoded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from events.feed import FeedAppended, FeedEntry
from projections.feed import SCHEMA, FeedProjection, read_feed
from services.ports import Notification, topic_of

pytestmark = pytest.mark.integration


def appended(connection_id: uuid.UUID, note_id: int, positions: list[int]) -> Notification:
    event = FeedAppended(
        originator_id=connection_id,
        originator_version=note_id,
        timestamp=datetime(2026, 12, 5, tzinfo=UTC),
        command_id=f"sync-{note_id}",
        provider="plaid",
        cursor=f"cursor-{note_id}",
        has_more=False,
        entries=tuple(
            FeedEntry(
                position=p,
                change="removed",
                syncyard_transaction_id=f"txn-{p}",
                provider="plaid",
                provider_transaction_id=f"plaid-{p}",
            )
            for p in positions
        ),
    )
    return Notification(
        id=note_id,
        originator_id=connection_id,
        originator_version=note_id,
        topic=topic_of(FeedAppended),
        event=event,
    )


async def test_a_page_applied_twice_or_repeating_an_entry_stores_each_entry_once(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(SCHEMA)
        account, other = uuid.uuid4(), uuid.uuid4()
        page = [
            appended(account, 1, [1, 2, 3]),
            appended(other, 2, [1]),
            appended(account, 3, [3, 4]),  # position 3 again: its first entry stays
        ]
        projection = FeedProjection()
        for _ in range(2):
            async with conn.transaction():
                await projection.apply_page(conn, page)

        entries = await read_feed(conn, account, since=0, limit=10)
        assert [(e.position, e.syncyard_transaction_id) for e in entries] == [
            (1, "txn-1"), (2, "txn-2"), (3, "txn-3"), (4, "txn-4")
        ]  # fmt: skip
        rows = await conn.fetch("SELECT command_id, entry FROM feed WHERE position = 3")
        assert [(r["command_id"], r["entry"]) for r in rows] == [
            ("sync-1", msgspec.json.encode(entries[2]))
        ]
        assert [e.position for e in await read_feed(conn, other, since=0, limit=10)] == [1]
    finally:
        await conn.close()

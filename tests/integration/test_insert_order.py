"""Inserts into the event log are serialised, so notification ids commit in order.

The relay and the projector read past the highest notification id they saw:
if a writer could commit id 2 while id 1 was still uncommitted, they would
move past 1 and never publish or project it. The library's insert function
took no table lock (its other path does); ours does.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from infra.bootstrap import pg_parts
from infra.eventstore import EVENTS_TABLE, library_env, open_application
from tests.support.harness import CIPHER_KEY

pytestmark = pytest.mark.integration

INSERT = (
    "SELECT * FROM es_insert_events_uuid("
    "ARRAY[ROW($1::uuid, 1, 'test:Event', '\\x00'::bytea)::stored_event_uuid])"
)


async def test_a_second_writer_waits_for_the_first_to_commit_instead_of_overtaking_it(
    database_url: str,
) -> None:
    app = await open_application(database_url, library_env(pg_parts(database_url), CIPHER_KEY))
    first = await asyncpg.connect(database_url)
    second = await asyncpg.connect(database_url)
    try:
        async with first.transaction():
            held = await first.fetchval(INSERT, uuid.uuid4())
            # The first writer's id is taken but not committed: the second must
            # not commit a higher one meanwhile. It waits for the table lock,
            # up to the store's lock timeout (5 s), and gives up.
            with pytest.raises(asyncpg.LockNotAvailableError):
                await second.fetchval(INSERT, uuid.uuid4())
        # Once the first commits, the second goes through, after it.
        after = await second.fetchval(INSERT, uuid.uuid4())
        assert after > held
        committed = await second.fetch(
            f"SELECT notification_id FROM {EVENTS_TABLE} ORDER BY notification_id"  # noqa: S608
        )
        assert [r["notification_id"] for r in committed] == [held, after]
    finally:
        await first.close()
        await second.close()
        await asyncio.to_thread(app.close)

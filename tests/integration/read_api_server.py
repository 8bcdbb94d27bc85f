"""The read-model HTTP API over a database holding both known sequences, for the tests of
its answers (test_read_api.py) and of who may call it (test_api_auth.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import date

import asyncpg
from aiohttp import web

from events.feed import FeedAppended, FeedEntry, FeedTransaction
from events.saga import SagaNeedsAttention, SagaStarted
from infra.http.api import create_app
from infra.http.auth import ApiToken
from projections.engine import migrate
from projections.registry import all_projections
from services.connections.state import connection_id_for
from tests.integration.read_model_events import MIN, T0, A, apply, health_log, status_log


@contextlib.asynccontextmanager
async def read_api(database_url: str, tokens: Iterable[ApiToken]) -> AsyncIterator[str]:
    """The API on a free port over a database holding both known sequences, clock at T0."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    log = status_log()
    for note in health_log().notes[1:]:  # acct-a is registered once already
        log.add(note.event)
    log.call(A, T0 - 50 * MIN, "plaid", "failure", command="c6", attempt=1)
    log.call(A, T0 - 50 * MIN, "mx", "success", command="c6", attempt=2, failover=True)
    saga = uuid.UUID(int=200)
    log.add(SagaStarted(**log.envelope(saga, T0 - 9 * MIN), kind="link", connection_id=A,
                        command_id="link-1", space_id="space-1", account_id="acct-a"))  # fmt: skip
    log.add(SagaNeedsAttention(**log.envelope(saga, T0 - 3 * MIN), compensation="remove_item",
                               reason="remove_item failed 6 times"))  # fmt: skip
    # The account's feed: one transaction, as a sync appends it.
    feed_stream = connection_id_for("space-1", "acct-a")
    log.add(
        FeedAppended(
            **log.envelope(feed_stream, T0 - 40 * MIN),
            command_id="c7",
            provider="plaid",
            cursor="cur-1",
            has_more=False,
            entries=(
                FeedEntry(
                    position=1,
                    change="added",
                    syncyard_transaction_id="st-1",
                    provider="plaid",
                    provider_transaction_id="p-1",
                    transaction=FeedTransaction(
                        provider_account_id="pa-1",
                        amount="4.50",
                        iso_currency_code="USD",
                        date=date(2025, 1, 10),
                        name="Blue Bottle Coffee",
                    ),
                ),
            ),
        )
    )
    async with pool.acquire() as conn:
        await apply(conn, log)
    await migrate(pool, all_projections())
    # The event store's table, as the API reads it: only the newest notification id matters.
    await pool.execute(
        "CREATE TABLE syncyard_events (notification_id bigint PRIMARY KEY);"
        "INSERT INTO syncyard_events VALUES (42);"
        "UPDATE syncyard_projection_position SET position = 40, updated_at = now() "
        "WHERE projection = 'sync_log'"
    )
    runner = web.AppRunner(
        create_app(pool, lambda: True, tokens=tokens, clock=lambda: T0), access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        await pool.close()

"""A worker SIGKILLed in the middle of a sync: the feed loses nothing and doubles nothing.

The crashing process runs the worker, the relay and the projector with the
fault-injection hook `SYNCYARD_SYNC_CRASH_AT` (infra/bootstrap.py):
`after_provider` kills it when the sync has Plaid's pages and nothing is
recorded; `after_commit` when the sync's events are committed (with their
feed index rows, in the same statement) but neither relayed
(`syncyard.evt.feed.FeedAppended`) nor answered. A clean process then takes
the command's redelivery. The next sync fails over to MX, whose copies of
Plaid's transactions are recognised only through the feed index; then Plaid
comes back. Each sync is answered once, the feed holds positions 1..N and
folds into the bank, and each FeedAppended is on the stream once. (A crash
between a commit and an index written apart from it, caught up by the next
sync, is tests/integration/test_feed_index.py's.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from events.feed import FeedAppended
from infra.bootstrap import Runtime, open_runtime
from services.connections.state import connection_id_for
from tests.integration.feed_helpers import (
    Entry,
    assert_feed_is_the_bank,
    bank_advances,
    bank_truth,
    provenance,
    read_over_rpc,
)
from tests.support.harness import (
    CIPHER_KEY,
    SPACE,
    Client,
    Component,
    client,
    eventually,
    inject_fault,
    register,
    settings_for,
    stored_events,
    stream_messages,
    sync,
)
from tests.support.sandbox_admin import SandboxAdmin

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(120)]

ACCOUNT = "crash-ana"
SYNCS = ("sync-1", "sync-2", "sync-3")
_INDEXED = "SELECT max(version) FROM syncyard_feed_index_version"


@contextlib.asynccontextmanager
async def observed(
    sandbox: str, nats_url: str, database_url: str
) -> AsyncIterator[tuple[Runtime, Client, aiohttp.ClientSession]]:
    """The test's own view of the store (no components), an upstream service, HTTP."""
    async with (
        open_runtime(
            settings_for(sandbox, nats_url=nats_url), nats_url, database_url, cipher_key=CIPHER_KEY
        ) as view,
        client(nats_url) as upstream,
        aiohttp.ClientSession() as http,
    ):
        yield view, upstream, http


async def _published_feed(nats_url: str) -> list[int]:
    """The notification id of every FeedAppended on the event stream."""
    return [
        int(m.headers["Syncyard-Notification-Id"])
        for m in await stream_messages(nats_url)
        if m.subject.endswith(".FeedAppended")
    ]


@pytest.mark.parametrize("point", ["after_provider", "after_commit"])
async def test_a_sync_killed_mid_way_is_answered_once_and_its_entries_are_in_the_feed_once(
    component_env: dict[str, str], sandbox: str, nats_url: str, database_url: str, point: str
) -> None:
    crashing = Component(
        "worker,relay,projector", {**component_env, "SYNCYARD_SYNC_CRASH_AT": point}
    )
    resumed = Component("worker,relay,projector", component_env)
    await crashing.start()
    try:
        async with observed(sandbox, nats_url, database_url) as (view, upstream, http):
            assert (await upstream.send(register(ACCOUNT, "plaid"))).success
            assert (await upstream.send(register(ACCOUNT, "mx"))).success
            await upstream.publish(sync(ACCOUNT, "sync-1"))
            assert crashing.proc is not None
            assert await asyncio.wait_for(crashing.proc.wait(), 20) == -9
            committed = [t for _, t, _ in await stored_events(database_url)]
            assert ("SyncCompleted" in committed) == (point == "after_commit"), committed
            if point == "after_commit":
                # The sync's FeedAppended was indexed in the statement that recorded
                # it (issue #13): a crash after the commit cannot leave it unindexed.
                events = await view.store.events_after(connection_id_for(SPACE, ACCOUNT), 0)
                (appended,) = [e for e in events if isinstance(e, FeedAppended)]
                assert await view.pool.fetchval(_INDEXED) == events[-1].originator_version
                assert appended.originator_version <= events[-1].originator_version

            # A clean worker takes the redelivery (after the ack wait): one answer.
            await resumed.start()
            first = await upstream.result("sync-1", timeout=30)
            assert first.success and first.data is not None, first.error
            assert first.duplicate == (point == "after_commit"), first
            entries: list[Entry] = first.data["entries"]
            assert entries and [e["position"] for e in entries] == list(range(1, len(entries) + 1))

            # Plaid goes down and the bank moves on: MX fills in, knowing what Plaid
            # delivered only through the feed index the crash left behind.
            await inject_fault(
                sandbox,
                provider="plaid",
                endpoint="/transactions/sync",
                status=500,
                error_code="INTERNAL_SERVER_ERROR",
            )
            await bank_advances(http, sandbox, ACCOUNT, days=3)
            during = await upstream.send(sync(ACCOUNT, "sync-2"), timeout=30)
            assert during.success and during.provider == "mx" and during.data is not None
            entries += during.data["entries"]
            assert len(during.data["entries"]) < len(first.data["entries"])

            bank = await bank_truth(http, sandbox, ACCOUNT)
            assert_feed_is_the_bank(
                entries, await provenance(view.store, ACCOUNT), bank, told_by="mx"
            )

            # Plaid is back: the feed is the bank, whatever went away meanwhile.
            await SandboxAdmin(http, sandbox).clear_faults()
            after = await upstream.send(sync(ACCOUNT, "sync-3"), timeout=30)
            assert after.success and after.provider == "plaid" and after.data is not None
            assert not after.data["has_more"]
            entries += after.data["entries"]
            assert_feed_is_the_bank(entries, await provenance(view.store, ACCOUNT), bank)
            assert await read_over_rpc(upstream.nc, ACCOUNT) == entries

            await asyncio.sleep(1)  # time for a second answer, were one coming
            assert [len(upstream.results[c]) for c in SYNCS] == [1, 1, 1]
        await _assert_each_feed_event_published_once(nats_url, database_url)
    finally:
        await crashing.stop()
        await resumed.stop()


async def _assert_each_feed_event_published_once(nats_url: str, database_url: str) -> None:
    stored = [nid for nid, topic, _ in await stored_events(database_url) if topic == "FeedAppended"]
    assert len(stored) == len(SYNCS), stored
    published: list[Any] = await eventually(
        lambda: _published_feed(nats_url), lambda got: len(got) >= len(stored), timeout=30
    )
    assert sorted(published) == stored
    assert set(collections.Counter(published).values()) == {1}

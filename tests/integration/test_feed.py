"""The product's promise end to end: the account's feed equals the bank, whichever provider is down.

One person's bank sits behind Plaid and MX in the sandbox; syncyard holds a
link at each. The feed, folded as a consumer folds it, must hold every live
bank transaction exactly once, through failovers and back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from events.codec import decode_result, encode
from events.commands import ReadFeed
from events.results import CommandResult
from events.subjects import rpc_subject
from infra.bootstrap import Runtime
from tests.integration.feed_helpers import (
    assert_feed_is_the_bank,
    bank_advances,
    bank_truth,
    provenance,
)
from tests.support import bus
from tests.support.harness import (
    AUTH,
    SPACE,
    Client,
    inject_fault,
    register,
    sync,
)
from tests.support.sandbox_admin import SandboxAdmin

pytestmark = pytest.mark.integration


@pytest.fixture
async def http(sandbox: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def synced(upstream: Client, account: str, command_id: str) -> CommandResult:
    result = await upstream.send(sync(account, command_id))
    assert result.success, result.error
    assert result.data is not None
    return result


async def test_the_feed_equals_the_bank_through_a_plaid_outage_and_back(
    syncyard: Runtime, upstream: Client, sandbox: str, http: aiohttp.ClientSession
) -> None:
    account = "feed-ana"
    assert (await upstream.send(register(account, "plaid"))).success
    assert (await upstream.send(register(account, "mx"))).success
    entries: list[dict[str, Any]] = []

    first = await synced(upstream, account, "feed-1")
    assert first.provider == "plaid" and first.data is not None
    entries += first.data["entries"]

    # Plaid goes down while the bank moves on: the sync fails over to MX, whose
    # first sync brings its whole history; only what the feed lacks is delivered.
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=500,
        error_code="INTERNAL_SERVER_ERROR",
    )
    await bank_advances(http, sandbox, account, days=3)
    during = await synced(upstream, account, "feed-2")
    assert during.provider == "mx" and during.failover_used and during.data is not None
    entries += during.data["entries"]
    assert len(during.data["entries"]) < len(first.data["entries"])

    # Plaid recovers and resumes from its own cursor; what MX delivered is not repeated.
    await SandboxAdmin(http, sandbox).clear_faults()
    await bank_advances(http, sandbox, account, days=3)
    after = await synced(upstream, account, "feed-3")
    assert after.provider == "plaid" and after.data is not None
    entries += after.data["entries"]

    # MX's copies of what Plaid had delivered are known too (recognised, not delivered).
    known = await provenance(syncyard.store, account)
    assert_feed_is_the_bank(entries, known, await bank_truth(http, sandbox, account))


async def test_a_caller_that_lost_its_results_catches_up_from_its_position(
    syncyard: Runtime, upstream: Client, sandbox: str, nats_url: str, http: aiohttp.ClientSession
) -> None:
    account = "feed-ben"
    assert (await upstream.send(register(account, "plaid"))).success
    first = await synced(upstream, account, "ben-1")
    assert first.data is not None
    await bank_advances(http, sandbox, account, days=2)
    second = await synced(upstream, account, "ben-2")
    assert second.data is not None
    delivered = [*first.data["entries"], *second.data["entries"]]

    # A consumer that folded only the first result reads the rest by position,
    # over RPC and over HTTP, and gets exactly what the second result carried.
    since = first.data["position"]
    nc = await bus.connect(nats_url)
    try:
        reply = await nc.request(
            rpc_subject("feed.read"),
            encode(ReadFeed(command_id="read-1", space_id=SPACE, account_id=account, since=since)),
            timeout=10,
        )
    finally:
        await nc.drain()
    read = decode_result(reply.data)
    assert read.success and read.data is not None
    assert read.data["entries"] == second.data["entries"]
    assert read.data["position"] == second.data["position"] and not read.data["has_more"]

    assert syncyard.http_url is not None
    url = f"{syncyard.http_url}/v1/accounts/{account}/transactions/changes"
    params = {"space_id": SPACE, "since": "0", "limit": "1000"}
    async with http.get(url, params=params, headers=AUTH) as response:
        assert response.status == 200, await response.text()
        page = await response.json()
    assert page["entries"] == delivered
    async with http.get(url, params={"since": "0"}, headers=AUTH) as response:
        assert response.status == 400 and "space_id" in (await response.json())["error"]["message"]


async def test_a_v1_sync_that_still_sends_a_cursor_is_served_from_syncyard_s_own(
    syncyard: Runtime, upstream: Client
) -> None:
    account = "feed-cy"
    assert (await upstream.send(register(account, "plaid"))).success
    first = await synced(upstream, account, "cy-1")
    payload = encode(sync(account, "cy-2"))[:-1] + b',"cursor":"a-cursor-from-v1"}'

    await upstream.publish_raw("sync.transactions", payload, msg_id="cy-2")
    second = await upstream.result("cy-2")

    assert second.success and second.data is not None and first.data is not None
    assert second.data["entries"] == [] and second.data["position"] == first.data["position"]


async def test_a_resent_sync_gets_its_original_entries_over_rpc_after_the_duplicate_window(
    syncyard: Runtime, upstream: Client, sandbox: str, nats_url: str, http: aiohttp.ClientSession
) -> None:
    account = "feed-dee"
    assert (await upstream.send(register(account, "plaid"))).success
    first = await synced(upstream, account, "dee-1")
    await bank_advances(http, sandbox, account, days=2)
    await synced(upstream, account, "dee-2")  # the feed moves on meanwhile

    # Past NATS's window the resend reaches syncyard, which answers from the feed.
    nc = await bus.connect(nats_url)
    try:
        reply = await nc.request(
            rpc_subject("sync.transactions"), encode(sync(account, "dee-1")), timeout=10
        )
    finally:
        await nc.drain()
    again = decode_result(reply.data)

    assert again.duplicate and again.success and again.provider == first.provider
    assert again.data == first.data

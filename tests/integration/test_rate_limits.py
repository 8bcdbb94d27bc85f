"""Rate limits shared by replicas: a call that would go over is never sent."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import asyncpg
import msgspec
import pytest

from services.resilience.rate_limit import RateLimit, RateLimiter
from tests.integration.feed_helpers import assert_feed_is_the_bank, bank_truth, provenance
from tests.support.harness import (
    client,
    register,
    running_syncyard,
    sandbox_calls,
    settings_for,
    stored_events,
    sync,
)

pytestmark = pytest.mark.integration


async def test_under_real_quotas_two_replicas_never_exceed_the_limit_and_see_no_429(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{sandbox}/_admin/scenario", json={"name": "rate-limited"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
    settings = msgspec.structs.replace(
        settings_for(sandbox), rate_limits={"plaid/sync.transactions": RateLimit(per_minute=10)}
    )
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(running_syncyard(settings, nats_url, database_url))
        upstream = await stack.enter_async_context(client(nats_url))
        for a in range(4):
            assert (await upstream.send(register(f"q{a}", "plaid"))).success
            assert (await upstream.send(register(f"q{a}", "mx"))).success
        commands = [sync(f"q{n % 4}", f"quota-{n}") for n in range(24)]
        first_minute = _minute()
        await asyncio.gather(*(upstream.publish(cmd) for cmd in commands))
        results = [await upstream.result(cmd.command_id, timeout=30) for cmd in commands]
        # The limit counts per clock minute: a run that crosses a minute's end
        # (a slow, loaded machine) may spend the next minute's ten as well.
        minutes = _minute() - first_minute + 1

    assert all(r.success for r in results), [r.error for r in results if not r.success]
    providers = [r.provider for r in results]
    calls = await sandbox_calls(sandbox)
    plaid_syncs = sum(v["calls"] for k, v in calls["plaid"].items() if "transactions" in k)
    # The limit, shared by both replicas: spent, and never exceeded in any minute.
    assert 10 <= plaid_syncs <= 10 * minutes
    # The rest went to the backup link, unsent to plaid. Two replicas may sync one
    # account at once: the one that appends second re-plans (SyncRaceError), and
    # with Plaid's quota spent by then, its redelivery is served by MX; the quota
    # still counted the discarded call.
    assert providers.count("plaid") <= plaid_syncs
    assert providers.count("plaid") + providers.count("mx") == len(commands)
    assert "ProviderFailed" not in [t for _, t, _ in await stored_events(database_url)]


def _minute() -> int:
    return int(time.time() // 60)


async def _plaid_pages(sandbox: str) -> int:
    calls = await sandbox_calls(sandbox)
    return sum(v["calls"] for k, v in calls["plaid"].items() if "transactions" in k)


async def _permits_then_window_passes(database_url: str, key: str) -> int:
    """The permits the limit gave this hour; then its hour ends, as PostgreSQL's clock
    would end it (the count starts afresh)."""
    conn = await asyncpg.connect(database_url)
    try:
        given: int = await conn.fetchval(
            "SELECT hour_calls FROM syncyard_rate_limits WHERE key = $1", key
        )
        await conn.execute("UPDATE syncyard_rate_limits SET hour_calls = 0 WHERE key = $1", key)
    finally:
        await conn.close()
    return given


async def test_a_walk_takes_a_permit_per_page_and_one_out_of_permits_goes_on_at_the_next_sync(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    # Three calls an hour; the test moves the hour on itself. Started too near a real
    # hour's end, PostgreSQL's clock would do it first, in the middle of a walk.
    left_s = 3600 - time.time() % 3600
    if left_s < 60:
        await asyncio.sleep(left_s + 1)
    key = "plaid/sync.transactions"
    settings = msgspec.structs.replace(
        settings_for(sandbox), rate_limits={key: RateLimit(per_hour=3)}
    )
    account = "walker"
    async with (
        running_syncyard(settings, nats_url, database_url) as runtime,
        client(nats_url) as upstream,
        aiohttp.ClientSession() as http,
    ):
        assert (await upstream.send(register(account, "plaid"))).success
        # Pages of five: the person's history is several walks of three pages.
        first = await upstream.send(sync(account, "walk-0", count=5))
        assert first.success and first.data is not None, first.error
        assert first.data["has_more"] is True and first.data["entries"]
        entries = list(first.data["entries"])
        assert await _plaid_pages(sandbox) == 3  # three permits, three pages: then it stopped
        # The hour's permits spent, the next sync waits for the next hour, uncalled.
        waits = await upstream.send(sync(account, "walk-waits", count=5))
        assert not waits.success and waits.attempts == 0 and waits.deferred_until is not None
        permits = await _permits_then_window_passes(database_url, key)
        for n in range(1, 20):
            result = await upstream.send(sync(account, f"walk-{n}", count=5))
            assert result.success and result.data is not None, result.error
            permits += await _permits_then_window_passes(database_url, key)
            # Each walk goes on from the cursor the last one kept: something new each time.
            assert result.data["entries"] or not result.data["has_more"]
            entries += result.data["entries"]
            if not result.data["has_more"]:
                break
        else:
            raise AssertionError("the walks never reached the end of the history")
        pages = await _plaid_pages(sandbox)
        known = await provenance(runtime.store, account)
        truth = await bank_truth(http, sandbox, account)
    assert pages == permits and pages > 3
    assert_feed_is_the_bank(entries, known, truth)


async def _no_reset(_: asyncpg.Connection) -> None:
    """The per-command pool's reset (`infra/bootstrap.py`): none, to save a round trip."""


async def test_setting_up_without_limits_leaves_no_statement_open_on_the_connection(
    database_url: str,
) -> None:
    # Set up like the per-command pool: a statement timeout, no reset on release.
    # With no limits configured the setup used to send asyncpg's `executemany` an
    # empty list, which parses the INSERT but never sends a Sync: the server's
    # statement timer kept running on the idle connection, and the next query on
    # it, once that timeout had passed, failed at once (a `connection.register`
    # in a fresh `make run`, in `key_for_new`, ~30 s after start).
    async with asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=1,
        reset=_no_reset,
        server_settings={"statement_timeout": "500ms"},
    ) as pool:
        await RateLimiter(pool, {}).setup()
        await asyncio.sleep(1.0)
        assert await pool.fetchval("SELECT 1") == 1

"""Two replicas on one NATS and one PostgreSQL share one breaker per provider and region."""

from __future__ import annotations

import contextlib

import pytest

from tests.integration.harness import (
    client,
    eventually,
    inject_fault,
    register,
    running_syncyard,
    sandbox_calls,
    settings_for,
    stored_events,
    sync,
)

pytestmark = pytest.mark.integration


async def plaid_sync_calls(sandbox: str) -> int:
    calls = await sandbox_calls(sandbox)
    return sum(v["calls"] for k, v in calls.get("plaid", {}).items() if "transactions" in k)


async def test_two_replicas_open_one_breaker_once_and_both_skip_the_provider(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        replicas = [
            await stack.enter_async_context(
                running_syncyard(settings_for(sandbox), nats_url, database_url)
            )
            for _ in range(2)
        ]
        upstream = await stack.enter_async_context(client(nats_url))
        for account in ("a1", "a2"):
            assert (await upstream.send(register(account, "plaid"))).success
            assert (await upstream.send(register(account, "mx"))).success
        await inject_fault(
            sandbox,
            provider="plaid",
            endpoint="/transactions/sync",
            status=500,
            error_code="INSTITUTION_DOWN",
        )

        for n in range(5):  # five failures at plaid, each failed over to mx
            result = await upstream.send(sync(f"a{n % 2 + 1}", f"down-{n}"))
            assert result.success and result.provider == "mx" and result.failover_used

        async def statuses() -> list[str]:
            return [r.board.status("plaid", "US") for r in replicas]

        await eventually(statuses, lambda s: s == ["open", "open"], timeout=5)
        calls_when_opened = await plaid_sync_calls(sandbox)
        assert calls_when_opened == 5

        for n in range(10):  # while open, plaid is skipped without a call
            result = await upstream.send(sync(f"a{n % 2 + 1}", f"open-{n}"))
            assert result.success and result.provider == "mx" and result.failover_used
            assert result.attempts == 1
        assert await plaid_sync_calls(sandbox) == calls_when_opened

    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("BreakerOpened") == 1

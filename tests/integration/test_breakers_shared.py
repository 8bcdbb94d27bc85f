"""Two replicas on one NATS and one PostgreSQL share one breaker per provider and region."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.support.harness import (
    Component,
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
            error_code="INTERNAL_SERVER_ERROR",
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


async def test_two_worker_processes_record_one_breaker_opened_and_both_stop_calling(
    sandbox: str, nats_url: str, database_url: str, component_env: dict[str, str]
) -> None:
    workers = [Component("worker", component_env) for _ in range(2)]
    for worker in workers:
        await worker.start()
    try:
        async with client(nats_url) as upstream:
            for account in ("w1", "w2"):
                assert (await upstream.send(register(account, "plaid"))).success
                assert (await upstream.send(register(account, "mx"))).success
            await inject_fault(
                sandbox,
                provider="plaid",
                endpoint="/transactions/sync",
                status=500,
                error_code="INTERNAL_SERVER_ERROR",
            )
            for n in range(5):
                assert (await upstream.send(sync(f"w{n % 2 + 1}", f"proc-down-{n}"))).success

            async def opened() -> int:
                return [t for _, t, _ in await stored_events(database_url)].count("BreakerOpened")

            await eventually(opened, lambda n: n == 1, timeout=5)
            await asyncio.sleep(1.0)  # ten times the 100 ms replicas have to hear of it
            calls = await plaid_sync_calls(sandbox)
            for n in range(10):  # spread over both processes by the shared consumer
                result = await upstream.send(sync(f"w{n % 2 + 1}", f"proc-open-{n}"))
                assert result.success and result.provider == "mx"
            assert await plaid_sync_calls(sandbox) == calls
            assert await opened() == 1
    finally:
        for worker in workers:
            await worker.stop()

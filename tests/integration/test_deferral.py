"""Failures time can fix are deferred durably and tried again, across restarts too."""

from __future__ import annotations

import msgspec
import pytest

from events.results import CommandResult
from services.resilience.retry import DEFAULT_RETRY, RetryPolicy
from tests.support.harness import (
    Client,
    client,
    eventually,
    inject_fault,
    register,
    running_syncyard,
    settings_for,
    stored_events,
    sync,
)

pytestmark = pytest.mark.integration

QUICK_RETRY = {**DEFAULT_RETRY, "provider_down": RetryPolicy(tries=4, base_s=0.5, factor=1.0)}


async def answers(upstream: Client, command_id: str, n: int) -> list[CommandResult]:
    async def probe() -> list[CommandResult]:
        return list(upstream.results.get(command_id, []))

    return await eventually(probe, lambda got: len(got) >= n, timeout=20)


async def test_a_retryable_failure_is_deferred_then_completed_by_the_durable_timer(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = msgspec.structs.replace(settings_for(sandbox), retry=QUICK_RETRY)
    async with running_syncyard(settings, nats_url, database_url), client(nats_url) as upstream:
        assert (await upstream.send(register("acct-d", "plaid"))).success
        await inject_fault(
            sandbox,
            provider="plaid",
            endpoint="/transactions/sync",
            status=500,
            error_code="INSTITUTION_DOWN",
            count=2,
        )
        await upstream.publish(sync("acct-d", "deferred-1"))
        first, second, final = await answers(upstream, "deferred-1", 3)

    assert not first.success and first.deferred_until is not None
    assert first.error is not None and first.error.code == "INSTITUTION_DOWN"
    assert not second.success and second.deferred_until is not None
    assert final.success and final.deferred_until is None
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("SyncDeferred") == 2
    assert topics.count("SyncCompleted") == 1 and topics[-1] == "SyncCompleted"


async def test_tries_run_out_into_a_final_failure(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    retry = {**DEFAULT_RETRY, "provider_down": RetryPolicy(tries=2, base_s=0.3, factor=1.0)}
    settings = msgspec.structs.replace(settings_for(sandbox), retry=retry)
    async with running_syncyard(settings, nats_url, database_url), client(nats_url) as upstream:
        assert (await upstream.send(register("acct-e", "plaid"))).success
        await inject_fault(
            sandbox,
            provider="plaid",
            endpoint="/transactions/sync",
            status=500,
            error_code="INSTITUTION_DOWN",
        )
        await upstream.publish(sync("acct-e", "exhausted-1"))
        first, final = await answers(upstream, "exhausted-1", 2)
    assert first.deferred_until is not None
    assert not final.success and final.deferred_until is None
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("SyncDeferred") == 1 and topics[-1] == "SyncFailed"


async def test_a_deferred_sync_resumes_after_a_restart(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    retry = {**DEFAULT_RETRY, "provider_down": RetryPolicy(tries=3, base_s=3.0, factor=1.0)}
    settings = msgspec.structs.replace(settings_for(sandbox), retry=retry)
    async with client(nats_url) as upstream:
        async with running_syncyard(settings, nats_url, database_url):
            assert (await upstream.send(register("acct-r", "plaid"))).success
            await inject_fault(
                sandbox,
                provider="plaid",
                endpoint="/transactions/sync",
                status=500,
                error_code="INSTITUTION_DOWN",
                count=1,
            )
            await upstream.publish(sync("acct-r", "restart-1"))
            (first,) = await answers(upstream, "restart-1", 1)
            assert first.deferred_until is not None
        # syncyard is down while the deferral comes due; a new process picks it up.
        async with running_syncyard(settings, nats_url, database_url):
            _, final = await answers(upstream, "restart-1", 2)
    assert final.success
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("SyncCompleted") == 1


async def test_bank_maintenance_defers_syncs_to_its_end_and_they_resume_after_a_restart(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = settings_for(sandbox)
    async with client(nats_url) as upstream:
        async with running_syncyard(settings, nats_url, database_url):
            assert (await upstream.send(register("acct-m", "plaid"))).success
            await inject_fault(
                sandbox,
                provider="plaid",
                endpoint="/transactions/sync",
                error_code="PLANNED_MAINTENANCE",
                end_s=3,
                retry_after_s="until_end",
            )
            await upstream.publish(sync("acct-m", "maint-1"))
            (first,) = await answers(upstream, "maint-1", 1)
            assert first.error is not None and first.error.type == "maintenance"
            assert first.deferred_until is not None
            # While the bank is in maintenance, its syncs are not even attempted.
            await upstream.publish(sync("acct-m", "maint-2"))
            (held,) = await answers(upstream, "maint-2", 1)
            assert held.error is not None and held.error.code == "in_maintenance"
            assert held.attempts == 0 and held.deferred_until is not None
        # Down through the rest of the window; a fresh process resumes both.
        async with running_syncyard(settings, nats_url, database_url):
            finals = [(await answers(upstream, cid, 2))[-1] for cid in ("maint-1", "maint-2")]
    assert all(r.success for r in finals)
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("MaintenanceDetected") == 1
    assert topics.count("SyncCompleted") == 2

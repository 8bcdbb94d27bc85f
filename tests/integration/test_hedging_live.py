"""Hedging over real HTTP: a browned-out primary is raced by the backup link."""

from __future__ import annotations

import msgspec
import pytest

from services.resilience.hedging import HedgePolicy
from tests.support.harness import (
    client,
    inject_fault,
    register,
    running_syncyard,
    settings_for,
    stored_events,
    sync,
)

pytestmark = pytest.mark.integration


async def test_a_slow_primary_is_hedged_and_the_losing_call_is_recorded_as_cancelled(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = msgspec.structs.replace(
        settings_for(sandbox),
        call_timeout_s=10.0,
        hedging={"sync.transactions": HedgePolicy(default_delay_ms=100)},
    )
    async with running_syncyard(settings, nats_url, database_url), client(nats_url) as upstream:
        assert (await upstream.send(register("acct-h", "plaid"))).success
        assert (await upstream.send(register("acct-h", "mx"))).success
        await inject_fault(
            sandbox, provider="plaid", endpoint="/transactions/sync", latency_ms=5000, count=1
        )
        result = await upstream.send(sync("acct-h", "hedged-1"))

    assert result.success and result.provider == "mx" and result.failover_used
    assert result.attempts == 2
    assert result.response_time_ms < 5000  # answered by the hedge, not after the slow call
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("ConnectionAttempted") == 2 and "ProviderFailed" not in topics

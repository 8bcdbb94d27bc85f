"""Link creation orders providers by live health, and the decision records the scores."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from events.commands import CreateLink
from events.connection import SyncCompleted
from services.connections.state import connection_id_for
from services.resilience.policy import BreakerPolicy, PolicyBook
from tests.integration.test_cli import syncyard_cli
from tests.integration.test_replay import cli_env
from tests.support.harness import (
    SPACE,
    client,
    eventually,
    inject_fault,
    register,
    running_syncyard,
    settings_for,
    sync,
)

pytestmark = pytest.mark.integration

# Plaid keeps failing but its breaker stays closed: only its live score can send
# the next link to MX first.
NEVER_OPEN = PolicyBook(default=BreakerPolicy(failure_threshold=1000))


async def test_a_provider_with_a_poor_live_score_goes_after_a_healthy_one_at_link_creation(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = msgspec.structs.replace(settings_for(sandbox), breakers=NEVER_OPEN)
    async with (
        running_syncyard(settings, nats_url, database_url) as live,
        client(nats_url) as upstream,
    ):
        for provider in ("plaid", "mx"):
            assert (await upstream.send(register("rank-1", provider))).success
        await inject_fault(
            sandbox, provider="plaid", endpoint="/transactions/sync", status=500,
            error_code="INTERNAL_SERVER_ERROR",
        )  # fmt: skip
        health = live.deps.orchestrator.health
        assert health is not None
        for n in range(6):
            assert (await upstream.send(sync("rank-1", f"rank-sync-{n}"))).provider == "mx"

        async def plaid_score() -> int:
            assert health is not None
            return health.score("plaid", "US", datetime.now(UTC))

        # Every replica learns of the calls from the log, this one too.
        await eventually(plaid_score, lambda score: score < 50)

        result = await upstream.send(
            CreateLink(command_id="rank-link", space_id=SPACE, account_id="rank-2")
        )
        assert result.success and result.provider == "mx" and not result.failover_used

        async with live.pool.acquire() as conn:
            stream = await live.reader.read_stream(conn, connection_id_for(SPACE, "rank-2"))
    completed = [n.event for n in stream if isinstance(n.event, SyncCompleted)]
    assert len(completed) == 1 and completed[0].ranking is not None
    ranking = completed[0].ranking
    assert ranking.directory[:2] == ("plaid", "mx") and ranking.order[:2] == ("mx", "plaid")
    assert ranking.scores["plaid"] < 50 <= ranking.scores["mx"]

    code, out = await syncyard_cli(
        "audit", "connection", f"{SPACE}/rank-2", env=cli_env(database_url)
    )
    assert code == 0, out
    shown = f"ranking=mx:{ranking.scores['mx']} > plaid:{ranking.scores['plaid']}"
    assert shown in out and "directory plaid, mx" in out

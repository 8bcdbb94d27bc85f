"""The read models fed by the running system: commands in, events stored, API out."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from infra.bootstrap import Runtime
from tests.support.harness import AUTH, SPACE, Client, eventually, inject_fault, register, sync

pytestmark = pytest.mark.integration


async def test_a_failover_sync_shows_in_status_history_reliability_and_overview(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await upstream.send(register("acct-live", "plaid"))
    await upstream.send(register("acct-live", "mx"))
    await inject_fault(
        sandbox, provider="plaid", endpoint="/transactions/sync", status=500,
        error_code="INTERNAL_SERVER_ERROR",
    )  # fmt: skip
    assert (await upstream.send(sync("acct-live", "sync-live"))).failover_used
    base = f"{syncyard.http_url}/v1"
    async with aiohttp.ClientSession(headers=AUTH) as http:

        async def fetch(path: str) -> Any:
            async with http.get(f"{base}{path}") as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        syncs = await eventually(
            lambda: fetch(f"/connections/acct-live/syncs?space_id={SPACE}"),
            lambda body: len(body["syncs"]) == 1,
        )
        assert syncs["syncs"][0]["provider"] == "mx" and syncs["syncs"][0]["failover_used"]
        history = await eventually(
            lambda: fetch(f"/connections/acct-live/history?space_id={SPACE}"),
            lambda body: any(a["op"] == "sync.transactions" for a in body["attempts"]),
        )
        failed, served = [a for a in history["attempts"] if a["op"] == "sync.transactions"][::-1]
        assert (failed["provider"], failed["status"], failed["failover_to"]) == (
            "plaid", "failure", "mx",
        )  # fmt: skip
        assert (served["failover_from"], served["attempt_type"]) == ("plaid", "sync")

        status = await eventually(
            lambda: fetch(f"/connections/acct-live/status?space_id={SPACE}"),
            lambda body: body["connections"][0]["last_successful_sync_at"] is not None,
        )
        (connection,) = status["connections"]
        assert connection["status"] == "active" and connection["providers"] == ["mx", "plaid"]
        overview = await fetch("/metrics/overview")
        assert overview["connections"]["active"] == 1 and overview["syncs"]["successful"] == 1
        health = await fetch("/providers/health?region=US&provider=plaid")
        assert health["providers"][0]["window_5m"]["failures"] == 1

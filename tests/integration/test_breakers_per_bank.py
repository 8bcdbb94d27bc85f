"""Breakers where the failures are, on real NATS, PostgreSQL and the sandbox: one bank's
outage at Plaid, Plaid's own status report, and an operator's hold."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
import pytest

from events.commands import ForceBreaker, RegisterConnection
from infra.audit import breaker_as_of, describe
from infra.bootstrap import Runtime
from tests.support.harness import (
    Client,
    auth,
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

# Sandbox people whose usual bank differs (sandbox/truth.py, seed 7), and that bank's
# ids: syncyard's (services/institutions/seed.toml) and Plaid's.
DOWN = ("ana", "first_platypus_bank", "ins_946509")
UP = [("bo", "twill_river_bank"), ("gus", "tattersall_credit_union")]


def at_bank(account: str, institution_id: str) -> RegisterConnection:
    return msgspec.structs.replace(register(account, "plaid"), institution_id=institution_id)


async def plaid_syncs(sandbox: str) -> int:
    calls = await sandbox_calls(sandbox)
    return int(calls.get("plaid", {}).get("/transactions/sync", {}).get("calls", 0))


async def breakers(runtime: Runtime, **query: str) -> list[dict[str, Any]]:
    """The breakers read model; empty until the projector, started with syncyard, made it."""
    url = f"{runtime.http_url}/v1/breakers"
    async with aiohttp.ClientSession() as http, http.get(url, params=query, headers=auth()) as r:
        return list((await r.json())["breakers"]) if r.status == 200 else []


async def test_one_bank_down_at_plaid_leaves_syncs_to_other_banks_at_plaid_flowing(
    syncyard: Runtime, upstream: Client, sandbox: str, database_url: str
) -> None:
    account, bank, plaid_id = DOWN
    for person, institution in [(account, bank), *UP]:
        assert (await upstream.send(at_bank(person, institution))).success
    await inject_fault(
        sandbox, provider="plaid", institution=plaid_id, error_code="INSTITUTION_DOWN"
    )

    for n in range(5):  # one link only: each fails (and is deferred), never fails over
        assert not (await upstream.send(sync(account, f"down-{n}"))).success
    await eventually(lambda: _status(syncyard, bank), lambda s: s == "open", timeout=5)

    # Plaid itself is fine, and so are the other banks behind it.
    assert syncyard.board.status("plaid", "US") == "closed"
    for n, (person, _) in enumerate(UP * 3):
        result = await upstream.send(sync(person, f"up-{n}"))
        assert result.success and result.provider == "plaid" and not result.failover_used
    calls = await plaid_syncs(sandbox)
    refused = await upstream.send(sync(account, "while-open"))
    assert not refused.success and refused.attempts == 0  # skipped without a call
    assert await plaid_syncs(sandbox) == calls
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("BreakerOpened") == 1


async def test_a_bank_down_at_plaid_makes_its_syncs_wait_rather_than_fail_over_into_it(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    account, bank, plaid_id = DOWN
    assert (await upstream.send(at_bank(account, bank))).success
    # Another person at the same bank holds links at Plaid and MX.
    both = "dee"
    assert (await upstream.send(at_bank(both, bank))).success
    mx_link = msgspec.structs.replace(register(both, "mx"), institution_id=bank)
    assert (await upstream.send(mx_link)).success
    await inject_fault(
        sandbox, provider="plaid", institution=plaid_id, error_code="INSTITUTION_DOWN"
    )
    for n in range(5):
        assert not (await upstream.send(sync(account, f"bank-down-{n}"))).success
    await eventually(lambda: _status(syncyard, bank), lambda s: s == "open", timeout=5)

    mx_before = (await sandbox_calls(sandbox)).get("mx", {})
    waited = await upstream.send(sync(both, "bank-down-both"))
    # The bank is down on its own side: MX would meet the same outage, so the sync
    # waits for the bank (no try spent) instead of paying MX for an error.
    assert not waited.success and waited.attempts == 0 and waited.deferred_until is not None
    assert waited.error is not None and "down on its own side" in waited.error.message
    assert (await sandbox_calls(sandbox)).get("mx", {}) == mx_before
    assert syncyard.board.status("mx", "US", bank) == "closed"


async def _status(runtime: Runtime, bank: str) -> str:
    return runtime.board.status("plaid", "US", bank)


async def test_plaid_reporting_item_logins_down_opens_that_banks_breaker_without_a_call(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = msgspec.structs.replace(settings_for(sandbox), provider_status_interval_s=0.2)
    async with (
        running_syncyard(settings, nats_url, database_url) as runtime,
        client(nats_url) as upstream,
    ):
        person, bank = UP[1]
        assert (await upstream.send(at_bank(person, bank))).success
        # The bank's logins fail at Plaid: Plaid's status says so before any sync does.
        await inject_fault(
            sandbox,
            provider="plaid",
            institution="ins_408521",
            endpoint="/item/public_token/exchange",
            error_code="INSTITUTION_NOT_RESPONDING",
        )
        await eventually(lambda: _status(runtime, bank), lambda s: s == "open", timeout=10)
        assert await plaid_syncs(sandbox) == 0
        topics = [t for _, t, _ in await stored_events(database_url)]
        assert "ConnectionAttempted" not in topics and topics.count("BreakerOpened") == 1
        (row,) = await eventually(
            lambda: breakers(runtime, provider="plaid"),
            lambda rows: len(rows) == 1,
        )
        assert row["institution_id"] == bank and row["state"] == "open"
        assert row["source"] == "provider_status" and row["blame"] == "institution"
        assert "item_logins DOWN" in row["reason"]


async def test_an_operator_holds_a_banks_breaker_open_by_command_until_it_expires(
    syncyard: Runtime, upstream: Client, sandbox: str, database_url: str
) -> None:
    person, bank = UP[0]
    assert (await upstream.send(at_bank(person, bank))).success
    hold = ForceBreaker(
        command_id="hold-1",
        space_id="operators",
        provider="plaid",
        institution_id=bank,
        state="open",
        duration_s=1.5,
        actor="ops@example",
        reason="the bank announced maintenance",
    )
    held = await upstream.send(hold)
    assert held.success and held.data is not None and held.data["forced"] == "open"
    refused = await upstream.send(sync(person, "held"))
    assert not refused.success and refused.attempts == 0
    assert refused.error is not None and "held by an operator" in refused.error.message
    (row,) = await eventually(lambda: breakers(syncyard), lambda rows: len(rows) == 1)
    assert row["forced"] == "open" and row["forced_by"] == "ops@example"

    await eventually(lambda: _status(syncyard, bank), lambda s: s == "closed", timeout=10)
    # Released, the breaker lets calls through again on the ramp the release started
    # (services/resilience/README.md): at once, or once this command's place opens.
    after = await upstream.send(sync(person, "released"))
    assert after.success or (
        after.error is not None and "ramping up" in after.error.message and after.attempts == 0
    ), after.error
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("BreakerForced") == 1 and topics.count("BreakerReleased") == 1
    # `syncyard audit breaker plaid US --institution twill_river_bank` reads the same.
    async with syncyard.pool.acquire() as conn:
        audit = await breaker_as_of(conn, syncyard.reader, "plaid", "US", institution_id=bank)
    forced, released = (describe(note.event) for note in audit.events)
    assert forced["actor"] == "ops@example" and forced["reason"] == hold.reason
    assert released["actor"] == "syncyard" and audit.state.status == "closed"


async def test_only_operators_may_hold_a_breaker_over_http(syncyard: Runtime) -> None:
    body = {"provider": "plaid", "state": "open", "duration_s": 60, "reason": "test"}
    url = f"{syncyard.http_url}/v1/breakers/force"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=auth("viewer")) as r:
            assert r.status == 403
        # A hold stops every space's calls: an operator of one space (a tenant's
        # backend) may not hold one for everyone.
        async with http.post(url, json=body, headers=auth("operator-1")) as r:
            assert r.status == 403
        async with http.post(url, json=body, headers=auth("operator")) as r:
            assert r.status == 200
            assert (await r.json())["data"]["forced"] == "open"
        release = {"provider": "plaid", "reason": "done"}
        async with http.post(
            f"{syncyard.http_url}/v1/breakers/release", json=release, headers=auth("operator")
        ) as r:
            assert r.status == 200 and (await r.json())["data"]["state"] == "closed"
    (row,) = await eventually(
        lambda: breakers(syncyard),
        lambda rows: len(rows) == 1 and rows[0]["forced"] is None,
    )
    assert row["institution_id"] is None and "released by operator" in row["reason"]

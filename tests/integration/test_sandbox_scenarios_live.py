"""Scenarios switched at run time over the admin API change what the adapters see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.app import create_sandbox_app
from services.providers.base import LinkCredentials, ProviderCallError
from services.providers.plaid.adapter import PlaidAdapter
from tests.support.links import link_for

pytestmark = pytest.mark.integration

LINK = LinkCredentials(
    provider="plaid",
    item_id="item-1",
    access_token="access-sandbox-5e6f7a8b-0000-4c1d-9e2f-3a4b5c6d7e8f",
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sandbox(clock: Clock) -> AsyncIterator[str]:
    runner = web.AppRunner(create_sandbox_app(seed=7, clock=clock), shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def plaid(sandbox: str, http: aiohttp.ClientSession) -> PlaidAdapter:
    return PlaidAdapter(http, base_url=f"{sandbox}/plaid", client_id="c", secret="plaid-s3cret")


async def switch(http: aiohttp.ClientSession, sandbox: str, name: str | None) -> dict[str, Any]:
    async with http.put(f"{sandbox}/_admin/scenario", json={"name": name}) as response:
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body


async def sync_fails(plaid: PlaidAdapter) -> bool:
    try:
        await plaid.sync_transactions(LINK, cursor=None, count=50, timeout_s=5.0)
    except ProviderCallError:
        return True
    return False


async def test_plaid_outage_fails_sync_in_its_window_and_calm_does_not(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str, clock: Clock
) -> None:
    await switch(http, sandbox, "calm")
    assert not any([await sync_fails(plaid) for _ in range(5)])

    shown = await switch(http, sandbox, "plaid-outage")
    assert shown["name"] == "plaid-outage" and shown["faults"]
    assert not await sync_fails(plaid)
    clock.now += 10
    assert all([await sync_fails(plaid) for _ in range(5)])
    clock.now += 60
    assert not await sync_fails(plaid)


async def test_the_active_scenario_is_shown_and_an_unknown_one_refused(
    http: aiohttp.ClientSession, sandbox: str
) -> None:
    await switch(http, sandbox, "brownout")
    async with http.get(f"{sandbox}/_admin/scenario") as response:
        shown = await response.json()
    async with http.put(f"{sandbox}/_admin/scenario", json={"name": "nope"}) as response:
        refused = (response.status, await response.json())

    assert shown["name"] == "brownout" and "calm" in shown["available"]
    assert refused[0] == 400 and "no scenario 'nope'" in refused[1]["error"]


async def test_a_maintenance_window_at_one_bank_says_when_it_ends(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str, clock: Clock
) -> None:
    found = await plaid.search_institutions(
        "gingham", country_codes=("US",), limit=1, timeout_s=2.0
    )
    await switch(http, sandbox, "bank-maintenance")
    clock.now += 20
    # greg banks at Gingham Savings (sandbox/truth.py at seed 7); ana does not.
    at_gingham, elsewhere = (link_for("plaid", person) for person in ("greg", "ana"))

    with pytest.raises(ProviderCallError) as caught:
        await plaid.get_accounts(at_gingham, timeout_s=2.0)
    other = await plaid.get_accounts(elsewhere, timeout_s=2.0)
    # Plaid's own directory still answers, and its status reports the bank down.
    status = await plaid.institution_status(found[0].institution_id, timeout_s=2.0)

    assert (caught.value.error.code, caught.value.retry_after_s) == ("INSTITUTION_DOWN", 100.0)
    assert other.accounts
    assert status.down and status.blame == "institution"
    assert {r.product: r.status for r in status.reports} == {
        "item_logins": "DOWN",
        "transactions_updates": "DOWN",
    }


@pytest.mark.parametrize("connection", ["hang", "drip"])
async def test_a_hanging_or_dripping_connection_times_out_as_a_network_error(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str, connection: str
) -> None:
    fault = {"provider": "plaid", "connection": connection, "hang_s": 1.0}
    async with http.post(f"{sandbox}/_admin/faults", json=fault) as response:
        assert response.status == 201

    with pytest.raises(ProviderCallError) as caught:
        await plaid.sync_transactions(LINK, cursor=None, count=500, timeout_s=0.3)

    assert (caught.value.error.code, caught.value.error.type) == ("timeout", "network")

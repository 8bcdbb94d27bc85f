"""The Bitso adapter over real HTTP against the sandbox: every operation, paging, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.app import create_sandbox_app
from sandbox.bitso_data import api_secret_for, fake_account
from services.providers.base import (
    LinkCredentials,
    LinkRequest,
    ProviderAdapter,
    ProviderCallError,
    WebhookRejectedError,
)
from services.providers.bitso.adapter import API_SETUP_URL, BitsoAdapter
from services.providers.bitso.signing import NonceSource
from services.providers.registry import build_providers
from services.providers.settings import ProviderSettings

pytestmark = pytest.mark.integration

SEED = 7
KEY = "BLpkbWFduP"
SECRET = api_secret_for(SEED, KEY)
LINK = LinkCredentials(provider="bitso", item_id=KEY, access_token=f"{KEY}:{SECRET}")


@pytest.fixture(scope="module")
async def sandbox_url() -> AsyncIterator[str]:
    runner = web.AppRunner(create_sandbox_app(seed=SEED), shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sandbox_url}/_admin/reset") as response:
        assert response.status == 200


@pytest.fixture
def bitso(sandbox_url: str, http: aiohttp.ClientSession) -> ProviderAdapter:
    settings = ProviderSettings(
        name="bitso", base_url=f"{sandbox_url}/bitso", client_id="unused", secret="unused"
    )
    return build_providers(http, {"bitso": settings})["bitso"]


async def arm(http: aiohttp.ClientSession, sandbox_url: str, **fault: Any) -> None:
    async with http.post(f"{sandbox_url}/_admin/faults", json=fault) as response:
        assert response.status == 201, await response.text()


async def failure(call: Any) -> ProviderCallError:
    with pytest.raises(ProviderCallError) as caught:
        await call
    for text in (str(caught.value), repr(caught.value), caught.value.error.message):
        assert SECRET not in text
    return caught.value


async def test_a_key_pair_exchanges_into_a_link_that_hides_its_secret(
    bitso: ProviderAdapter,
) -> None:
    token = await bitso.create_link(LinkRequest(user_ref="u1"), timeout_s=2.0)
    link = await bitso.exchange_token(f"{KEY}:{SECRET}", timeout_s=2.0)

    assert token.url == API_SETUP_URL
    assert link == LINK
    assert SECRET not in repr(link)
    assert SECRET not in str(link)


async def test_a_wrong_secret_is_refused_with_bitsos_credentials_error(
    bitso: ProviderAdapter,
) -> None:
    exc = await failure(bitso.exchange_token(f"{KEY}:not-the-secret", timeout_s=2.0))

    assert (exc.error.code, exc.error.type, exc.reauth_required) == ("0201", "auth", True)
    assert exc.http_status == 401


async def test_each_currency_balance_is_an_account(bitso: ProviderAdapter) -> None:
    page = await bitso.get_accounts(LINK, timeout_s=2.0)

    balances, _ = fake_account(SEED, KEY)
    assert [a["balances"]["iso_currency_code"] for a in page.accounts] == [
        b["currency"].upper() for b in balances
    ]
    mxn = page.accounts[0]
    assert mxn["type"] == "depository"
    assert mxn["balances"]["current"] == float(balances[0]["total"])
    assert KEY not in mxn["account_id"]


async def test_the_ledger_pages_by_marker_to_the_end_and_then_stays_quiet(
    bitso: ProviderAdapter,
) -> None:
    _, ledger = fake_account(SEED, KEY)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await bitso.sync_transactions(LINK, cursor=cursor, count=20, timeout_s=2.0)
        pages += 1
        seen += [t["transaction_id"] for t in page.added]
        cursor = page.next_cursor
        if not page.has_more:
            break
    again = await bitso.sync_transactions(LINK, cursor=cursor, count=20, timeout_s=2.0)

    expected = [f"{e['eid']}:{u['currency']}" for e in ledger for u in e["balance_updates"]]
    assert seen == expected
    assert pages == len(ledger) // 20 + 1
    assert cursor == ledger[-1]["eid"]
    assert (again.added, again.has_more, again.next_cursor) == ([], False, cursor)


async def test_a_marker_bitso_does_not_know_is_a_pagination_error(bitso: ProviderAdapter) -> None:
    exc = await failure(bitso.sync_transactions(LINK, cursor="f" * 32, count=5, timeout_s=2.0))

    assert (exc.error.code, exc.error.type) == ("0320", "validation")


async def test_a_replayed_nonce_is_refused_as_bitso_does(
    sandbox_url: str, http: aiohttp.ClientSession
) -> None:
    frozen = BitsoAdapter(
        http, base_url=f"{sandbox_url}/bitso", nonces=NonceSource(clock=lambda: 1.0)
    )
    stale = BitsoAdapter(
        http, base_url=f"{sandbox_url}/bitso", nonces=NonceSource(clock=lambda: 1.0)
    )
    # A key of its own: the sandbox remembers every key's highest nonce.
    key = "NonceReplayKey"
    link = LinkCredentials(
        provider="bitso", item_id=key, access_token=f"{key}:{api_secret_for(SEED, key)}"
    )
    await frozen.get_accounts(link, timeout_s=2.0)

    exc = await failure(stale.get_accounts(link, timeout_s=2.0))

    assert (exc.error.code, exc.error.retryable, exc.reauth_required) == ("0207", True, False)


async def test_health_comes_from_the_public_book_list(bitso: ProviderAdapter) -> None:
    status = await bitso.health_check(timeout_s=2.0)

    assert status.healthy
    assert status.detail == "5 books"


async def test_institutions_removal_and_webhooks_need_no_call(bitso: ProviderAdapter) -> None:
    assert (await bitso.get_institution("bitso", timeout_s=2.0)).name == "Bitso"
    found = await bitso.search_institutions("bit", country_codes=("MX",), limit=5, timeout_s=2.0)
    assert [i.institution_id for i in found] == ["bitso"]
    assert (
        await bitso.search_institutions("bit", country_codes=("US",), limit=5, timeout_s=2.0) == []
    )
    await bitso.remove_item(LINK, timeout_s=2.0)
    with pytest.raises(WebhookRejectedError, match="no Bitso webhook public keys"):
        await bitso.handle_webhook({}, b"{}", now=0.0, timeout_s=2.0)


async def test_rate_limit_fault_is_throttling_with_bitsos_lockout(
    bitso: ProviderAdapter, http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    await arm(http, sandbox_url, provider="bitso", endpoint="/v3/ledger/", error_code="0801")

    exc = await failure(bitso.sync_transactions(LINK, cursor=None, count=5, timeout_s=2.0))

    assert (exc.error.type, exc.error.retryable, exc.http_status) == ("rate_limit", True, 420)
    assert exc.retry_after_s == 60.0


async def test_a_maintenance_page_on_503_is_maintenance_and_then_recovers(
    bitso: ProviderAdapter, http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    await arm(http, sandbox_url, provider="bitso", status=503, body="garbage", count=1)

    exc = await failure(bitso.get_accounts(LINK, timeout_s=2.0))
    recovered = await bitso.get_accounts(LINK, timeout_s=2.0)

    assert (exc.error.type, exc.error.code) == ("maintenance", "http_503")
    assert recovered.accounts


async def test_a_truncated_body_is_an_invalid_response(
    bitso: ProviderAdapter, http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    await arm(http, sandbox_url, provider="bitso", endpoint="/v3/balance/", body="truncated")

    exc = await failure(bitso.get_accounts(LINK, timeout_s=2.0))

    assert exc.error.code == "invalid_response"


async def test_a_revoked_key_asks_the_person_to_relink(
    bitso: ProviderAdapter, http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    await arm(http, sandbox_url, provider="bitso", error_code="0326")

    exc = await failure(bitso.get_accounts(LINK, timeout_s=2.0))

    assert (exc.error.type, exc.reauth_required) == ("auth", True)

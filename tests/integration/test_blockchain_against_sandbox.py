"""The on-chain reader over real HTTP against the sandbox's Esplora: operations, paging, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.app import create_sandbox_app
from sandbox.chain_data import fake_wallet
from services.providers.base import (
    LinkCredentials,
    LinkRequest,
    ProviderAdapter,
    ProviderCallError,
    TransactionsPage,
    WebhookRejectedError,
)
from services.providers.registry import build_providers
from services.providers.settings import ProviderSettings

pytestmark = pytest.mark.integration

SEED = 7
ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
LINK = LinkCredentials(provider="blockchain", item_id=f"bitcoin:{ADDRESS}", access_token=ADDRESS)


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
def chain(sandbox_url: str, http: aiohttp.ClientSession) -> ProviderAdapter:
    settings = ProviderSettings(
        name="blockchain", base_url=f"{sandbox_url}/chain", client_id="bitcoin", secret=""
    )
    return build_providers(http, {"blockchain": settings})["blockchain"]


async def arm(http: aiohttp.ClientSession, sandbox_url: str, **fault: Any) -> None:
    async with http.post(f"{sandbox_url}/_admin/faults", json=fault) as response:
        assert response.status == 201, await response.text()


async def failure(call: Any) -> ProviderCallError:
    with pytest.raises(ProviderCallError) as caught:
        await call
    for text in (str(caught.value), repr(caught.value), caught.value.error.message):
        assert ADDRESS not in text
    return caught.value


async def sync_to_the_end(
    chain: ProviderAdapter, cursor: str | None, count: int
) -> list[TransactionsPage]:
    pages: list[TransactionsPage] = []
    while not pages or pages[-1].has_more:
        page = await chain.sync_transactions(LINK, cursor=cursor, count=count, timeout_s=2.0)
        pages.append(page)
        cursor = page.next_cursor
    return pages


async def test_an_address_links_after_its_checksum_and_the_reader_agree(
    chain: ProviderAdapter,
) -> None:
    token = await chain.create_link(LinkRequest(user_ref="u1"), timeout_s=2.0)

    assert token.token == "address:bitcoin"
    assert await chain.exchange_token(ADDRESS, timeout_s=2.0) == LINK
    assert await chain.exchange_token(f"bitcoin:{ADDRESS}", timeout_s=2.0) == LINK


@pytest.mark.parametrize(
    "token",
    [
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx",  # checksum broken
        f"testnet:{ADDRESS}",
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        "not an address",
    ],
)
async def test_a_malformed_or_foreign_address_is_refused_before_any_call(
    chain: ProviderAdapter, http: aiohttp.ClientSession, sandbox_url: str, token: str
) -> None:
    exc = await failure(chain.exchange_token(token, timeout_s=2.0))

    assert (exc.error.code, exc.error.type) == ("INVALID_ADDRESS", "validation")
    async with http.get(f"{sandbox_url}/_admin/calls") as response:
        assert "blockchain" not in await response.json()


async def test_the_wallet_is_one_account_with_confirmed_and_pending_balances(
    chain: ProviderAdapter,
) -> None:
    page = await chain.get_accounts(LINK, timeout_s=2.0)

    (account,) = page.accounts
    assert account["balances"]["iso_currency_code"] == "BTC"
    assert account["balances"]["available"] >= 0
    assert ADDRESS not in account["account_id"]


async def test_history_pages_newest_first_to_the_end_then_only_new_transfers(
    chain: ProviderAdapter,
) -> None:
    confirmed, _ = fake_wallet(SEED, ADDRESS)

    pages = await sync_to_the_end(chain, None, count=10)
    later = await sync_to_the_end(chain, pages[-1].next_cursor, count=10)

    ids = [t["transaction_id"] for p in pages for t in p.added]
    assert ids == [t["txid"] for t in confirmed]
    assert len(pages) >= 3
    assert [t for p in later for t in p.added] == []


async def test_amounts_net_out_what_left_and_what_reached_the_wallet(
    chain: ProviderAdapter,
) -> None:
    account = (await chain.get_accounts(LINK, timeout_s=2.0)).accounts[0]
    pages = await sync_to_the_end(chain, None, count=25)

    net_in = -sum(t["amount"] for p in pages for t in p.added)
    assert net_in == pytest.approx(account["balances"]["available"])


async def test_a_cursor_from_elsewhere_is_refused(chain: ProviderAdapter) -> None:
    exc = await failure(
        chain.sync_transactions(LINK, cursor="plaid-cursor", count=5, timeout_s=2.0)
    )

    assert exc.error.code == "INVALID_CURSOR"


async def test_health_institutions_removal_and_webhooks(chain: ProviderAdapter) -> None:
    assert (await chain.health_check(timeout_s=2.0)).healthy
    assert (await chain.get_institution("bitcoin", timeout_s=2.0)).institution_id == "bitcoin"
    found = await chain.search_institutions("bitcoin", country_codes=(), limit=3, timeout_s=2.0)
    assert [i.institution_id for i in found] == ["bitcoin"]
    await chain.remove_item(LINK, timeout_s=2.0)
    with pytest.raises(WebhookRejectedError):
        await chain.handle_webhook({}, b"{}", now=0.0, timeout_s=2.0)


async def test_a_rate_limited_reader_says_when_to_come_back(
    chain: ProviderAdapter, http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    await arm(http, sandbox_url, provider="blockchain", status=429, retry_after_s=3)

    exc = await failure(chain.get_accounts(LINK, timeout_s=2.0))

    assert (exc.error.code, exc.error.type, exc.retry_after_s) == (
        "RATE_LIMITED",
        "rate_limit",
        3.0,
    )


async def test_a_failing_page_mid_walk_is_retryable_and_the_cursor_resumes(
    chain: ProviderAdapter, http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    first = await chain.sync_transactions(LINK, cursor=None, count=25, timeout_s=2.0)
    await arm(
        http,
        sandbox_url,
        provider="blockchain",
        endpoint="/txs/chain/{last_txid}",
        status=503,
        count=1,
    )

    exc = await failure(
        chain.sync_transactions(LINK, cursor=first.next_cursor, count=25, timeout_s=2.0)
    )
    resumed = await chain.sync_transactions(LINK, cursor=first.next_cursor, count=25, timeout_s=2.0)

    assert (exc.error.type, exc.error.retryable) == ("provider_down", True)
    assert resumed.added


async def test_garbage_from_the_reader_is_an_invalid_response(
    chain: ProviderAdapter, http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    await arm(
        http, sandbox_url, provider="blockchain", endpoint="/address/{address}", body="garbage"
    )

    exc = await failure(chain.get_accounts(LINK, timeout_s=2.0))

    assert exc.error.code == "invalid_response"

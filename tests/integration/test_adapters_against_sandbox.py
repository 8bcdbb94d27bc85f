"""The Plaid and MX adapters over real HTTP against the sandbox, faults and all."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.app import create_sandbox_app
from services.providers.base import (
    LinkCredentials,
    ProviderAdapter,
    ProviderCallError,
    TransactionsPage,
)
from services.providers.registry import build_providers
from services.providers.settings import ProviderSettings

pytestmark = pytest.mark.integration

PLAID_TOKEN = "access-sandbox-7c1e4f2a-9b3d-4e8f-a6c5-1d2e3f4a5b6c"
PLAID_SECRET = "plaid-secret-0f9e8d7c6b5a"
MX_USER = "USR-2b4d6f8a-1c3e-5a7b-9d0f-e2c4a6b8d0f1"
MX_API_KEY = "mx-api-key-a1b2c3d4e5f6"
PLAID_LINK = LinkCredentials(provider="plaid", item_id="item-1", access_token=PLAID_TOKEN)
MX_LINK = LinkCredentials(provider="mx", item_id="MBR-9e8d7c6b", access_token=MX_USER)
SECRETS = (PLAID_TOKEN, PLAID_SECRET, MX_USER, MX_API_KEY)


@pytest.fixture(scope="module")
async def sandbox_url() -> AsyncIterator[str]:
    runner = web.AppRunner(create_sandbox_app(seed=7), shutdown_timeout=2.0)
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
def providers(sandbox_url: str, http: aiohttp.ClientSession) -> dict[str, ProviderAdapter]:
    return build_providers(
        http,
        {
            "plaid": ProviderSettings(
                name="plaid",
                base_url=f"{sandbox_url}/plaid",
                client_id="client-1",
                secret=PLAID_SECRET,
            ),
            "mx": ProviderSettings(
                name="mx", base_url=f"{sandbox_url}/mx", client_id="client-1", secret=MX_API_KEY
            ),
        },
    )


async def arm(http: aiohttp.ClientSession, sandbox_url: str, **fault: Any) -> None:
    async with http.post(f"{sandbox_url}/_admin/faults", json=fault) as response:
        assert response.status == 201, await response.text()


async def calls(http: aiohttp.ClientSession, sandbox_url: str) -> dict[str, Any]:
    async with http.get(f"{sandbox_url}/_admin/calls") as response:
        body: dict[str, Any] = await response.json()
        return body


async def sync_to_the_end(
    adapter: ProviderAdapter, link: LinkCredentials, count: int
) -> list[TransactionsPage]:
    pages: list[TransactionsPage] = []
    cursor: str | None = None
    while not pages or pages[-1].has_more:
        page = await adapter.sync_transactions(link, cursor=cursor, count=count, timeout_s=2.0)
        pages.append(page)
        cursor = page.next_cursor
    return pages


async def failure_of(adapter: ProviderAdapter, link: LinkCredentials) -> ProviderCallError:
    with pytest.raises(ProviderCallError) as caught:
        await adapter.get_accounts(link, timeout_s=2.0)
    assert_no_secrets(caught.value)
    return caught.value


def assert_no_secrets(exc: ProviderCallError) -> None:
    for secret in SECRETS:
        assert secret not in str(exc)
        assert secret not in repr(exc)
        assert secret not in exc.error.message


@pytest.mark.parametrize(("name", "link"), [("plaid", PLAID_LINK), ("mx", MX_LINK)])
async def test_accounts_come_back_normalised_with_balances(
    providers: dict[str, ProviderAdapter], name: str, link: LinkCredentials
) -> None:
    page = await providers[name].get_accounts(link, timeout_s=2.0)

    assert 2 <= len(page.accounts) <= 3
    for account in page.accounts:
        assert set(account) == {"account_id", "name", "type", "subtype", "mask", "balances"}
        assert account["type"] in {"depository", "credit"}
        assert set(account["balances"]) == {"current", "available", "iso_currency_code"}


async def test_plaid_transactions_page_by_cursor_to_the_end(
    providers: dict[str, ProviderAdapter],
) -> None:
    pages = await sync_to_the_end(providers["plaid"], PLAID_LINK, count=10)

    added = [t["transaction_id"] for p in pages for t in p.added]
    # A first sync is the bank as Plaid first aggregated it: nothing to modify or remove yet.
    assert len(pages) >= 3
    assert len(added) == len(set(added)) >= 25
    assert [(p.modified, p.removed) for p in pages] == [([], [])] * len(pages)
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]
    again = await providers["plaid"].sync_transactions(
        PLAID_LINK, cursor=pages[-1].next_cursor, count=10, timeout_s=2.0
    )
    assert (again.added, again.modified, again.removed, again.has_more) == ([], [], [], False)


async def test_the_same_token_and_seed_give_the_same_data(
    providers: dict[str, ProviderAdapter],
) -> None:
    first = await sync_to_the_end(providers["plaid"], PLAID_LINK, count=50)
    second = await sync_to_the_end(providers["plaid"], PLAID_LINK, count=50)

    assert first == second


async def test_mx_transactions_page_to_the_end_and_a_rerun_brings_nothing_already_seen(
    providers: dict[str, ProviderAdapter],
) -> None:
    pages = await sync_to_the_end(providers["mx"], MX_LINK, count=10)

    ids = [t["transaction_id"] for p in pages for t in p.added]
    accounts = await providers["mx"].get_accounts(MX_LINK, timeout_s=2.0)
    account_ids = {a["account_id"] for a in accounts.accounts}
    assert len(pages) >= 3
    assert len(ids) == len(set(ids))
    assert {t["account_id"] for p in pages for t in p.added} <= account_ids
    rerun = await providers["mx"].sync_transactions(
        MX_LINK, cursor=pages[-1].next_cursor, count=10, timeout_s=2.0
    )
    assert (rerun.added, rerun.modified, rerun.removed, rerun.has_more) == ([], [], [], False)


async def test_mx_pages_stay_within_ten_to_a_hundred_records(
    providers: dict[str, ProviderAdapter], http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    person = MX_USER.removeprefix("USR-")
    async with http.post(f"{sandbox_url}/_admin/truth/{person}/advance", json={"days": 90}):
        pass

    small = await providers["mx"].sync_transactions(MX_LINK, cursor=None, count=1, timeout_s=2.0)
    large = await providers["mx"].sync_transactions(MX_LINK, cursor=None, count=500, timeout_s=2.0)

    assert (len(small.added), small.has_more) == (10, True)
    assert (len(large.added), large.has_more) == (100, True)


async def test_an_mx_sync_run_from_a_stored_cursor_notices_a_member_needing_reauth(
    providers: dict[str, ProviderAdapter], http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    pages = await sync_to_the_end(providers["mx"], MX_LINK, count=25)
    await arm(http, sandbox_url, provider="mx", error_code="CHALLENGED")

    with pytest.raises(ProviderCallError) as caught:
        await providers["mx"].sync_transactions(
            MX_LINK, cursor=pages[-1].next_cursor, count=25, timeout_s=2.0
        )

    assert (caught.value.error.code, caught.value.reauth_required) == ("CHALLENGED", True)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"error_code": "INSTITUTION_DOWN"}, ("INSTITUTION_DOWN", "provider_down", True, False)),
        (
            {"error_code": "INTERNAL_SERVER_ERROR"},
            ("INTERNAL_SERVER_ERROR", "provider_down", True, False),
        ),
        (
            {"error_code": "PLANNED_MAINTENANCE"},
            ("PLANNED_MAINTENANCE", "maintenance", True, False),
        ),
        ({"error_code": "ACCOUNTS_LIMIT"}, ("ACCOUNTS_LIMIT", "rate_limit", True, False)),
        ({"error_code": "ITEM_LOGIN_REQUIRED"}, ("ITEM_LOGIN_REQUIRED", "auth", False, True)),
        ({"error_code": "ITEM_LOCKED"}, ("ITEM_LOCKED", "auth", False, True)),
        ({"error_code": "INVALID_REQUEST"}, ("INVALID_REQUEST", "validation", False, False)),
        # The sandbox answers a code it does not know as API_ERROR: Plaid's own
        # trouble by its type, whatever the code (unknown types stay `unknown`).
        (
            {"error_code": "NEVER_HEARD_OF_IT"},
            ("NEVER_HEARD_OF_IT", "provider_down", True, False),
        ),
        ({"status": 502, "body": "garbage"}, ("http_502", "provider_down", True, False)),
        ({"body": "garbage"}, ("invalid_response", "unknown", True, False)),
        ({"body": "truncated"}, ("invalid_response", "unknown", True, False)),
    ],
)
async def test_each_injected_plaid_fault_is_classified(
    providers: dict[str, ProviderAdapter],
    http: aiohttp.ClientSession,
    sandbox_url: str,
    fault: dict[str, Any],
    expected: tuple[str, str, bool, bool],
) -> None:
    await arm(http, sandbox_url, provider="plaid", **fault)

    exc = await failure_of(providers["plaid"], PLAID_LINK)

    assert (exc.error.code, exc.error.type, exc.error.retryable, exc.reauth_required) == expected
    assert exc.error.provider == "plaid"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 429}, ("TOO_MANY_REQUESTS", "rate_limit", True, False)),
        ({"status": 500}, ("INTERNAL_SERVER_ERROR", "provider_down", True, False)),
        ({"status": 503}, ("SERVICE_UNAVAILABLE", "maintenance", True, False)),
        ({"status": 401}, ("UNAUTHORIZED", "auth", False, False)),
        ({"status": 400}, ("BAD_REQUEST", "validation", False, False)),
        ({"error_code": "CHALLENGED"}, ("CHALLENGED", "auth", False, True)),
        ({"error_code": "EXPIRED"}, ("EXPIRED", "auth", False, True)),
        ({"error_code": "DEGRADED"}, ("DEGRADED", "provider_down", True, False)),
        ({"body": "garbage"}, ("invalid_response", "unknown", True, False)),
        ({"body": "truncated"}, ("invalid_response", "unknown", True, False)),
    ],
)
async def test_each_injected_mx_fault_is_classified(
    providers: dict[str, ProviderAdapter],
    http: aiohttp.ClientSession,
    sandbox_url: str,
    fault: dict[str, Any],
    expected: tuple[str, str, bool, bool],
) -> None:
    await arm(http, sandbox_url, provider="mx", **fault)

    exc = await failure_of(providers["mx"], MX_LINK)

    assert (exc.error.code, exc.error.type, exc.error.retryable, exc.reauth_required) == expected


@pytest.mark.parametrize("name", ["plaid", "mx"])
async def test_a_rate_limit_carries_the_retry_after_hint(
    providers: dict[str, ProviderAdapter], http: aiohttp.ClientSession, sandbox_url: str, name: str
) -> None:
    await arm(
        http,
        sandbox_url,
        provider=name,
        status=429,
        error_code="RATE_LIMIT_EXCEEDED",
        retry_after_s=3,
    )

    exc = await failure_of(providers[name], PLAID_LINK if name == "plaid" else MX_LINK)

    assert (exc.error.type, exc.retry_after_s) == ("rate_limit", 3.0)


@pytest.mark.parametrize(("name", "link"), [("plaid", PLAID_LINK), ("mx", MX_LINK)])
async def test_latency_beyond_the_timeout_is_a_network_timeout(
    providers: dict[str, ProviderAdapter],
    http: aiohttp.ClientSession,
    sandbox_url: str,
    name: str,
    link: LinkCredentials,
) -> None:
    await arm(http, sandbox_url, provider=name, latency_ms=600)
    started = time.monotonic()

    with pytest.raises(ProviderCallError) as caught:
        await providers[name].get_accounts(link, timeout_s=0.15)

    assert time.monotonic() - started < 0.5
    assert (caught.value.error.code, caught.value.error.type) == ("timeout", "network")
    assert caught.value.error.retryable is True
    assert_no_secrets(caught.value)


@pytest.mark.parametrize(("name", "link"), [("plaid", PLAID_LINK), ("mx", MX_LINK)])
async def test_latency_within_the_timeout_only_slows_the_answer(
    providers: dict[str, ProviderAdapter],
    http: aiohttp.ClientSession,
    sandbox_url: str,
    name: str,
    link: LinkCredentials,
) -> None:
    await arm(http, sandbox_url, provider=name, latency_ms=50)

    page = await providers[name].get_accounts(link, timeout_s=2.0)

    assert page.accounts


@pytest.mark.parametrize(("name", "link"), [("plaid", PLAID_LINK), ("mx", MX_LINK)])
async def test_a_refused_connection_is_a_network_error_without_the_token(
    http: aiohttp.ClientSession, name: str, link: LinkCredentials
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = ProviderSettings(
        name=name, base_url=f"http://127.0.0.1:{closed_port}", client_id="c", secret="s"
    )
    adapter = build_providers(http, {name: settings})[name]

    exc = await failure_of(adapter, link)

    assert (exc.error.code, exc.error.type, exc.error.retryable) == (
        "network_error",
        "network",
        True,
    )


async def test_a_bad_plaid_token_asks_for_reauth_without_echoing_it(
    providers: dict[str, ProviderAdapter],
) -> None:
    bad = LinkCredentials(provider="plaid", item_id="item-1", access_token="public-sandbox-123456")

    exc = await failure_of(providers["plaid"], bad)

    assert (exc.error.code, exc.error.type, exc.reauth_required) == (
        "INVALID_ACCESS_TOKEN",
        "auth",
        True,
    )
    assert "public-sandbox-123456" not in str(exc)


async def test_an_unknown_mx_user_is_a_validation_error(
    providers: dict[str, ProviderAdapter],
) -> None:
    bad = LinkCredentials(provider="mx", item_id="MBR-1", access_token="not-a-user-guid")

    exc = await failure_of(providers["mx"], bad)

    assert (exc.error.code, exc.error.type) == ("NOT_FOUND", "validation")
    assert "not-a-user-guid" not in str(exc)


async def test_a_counted_fault_hits_only_the_next_calls_to_its_endpoint(
    providers: dict[str, ProviderAdapter], http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    await arm(
        http,
        sandbox_url,
        provider="plaid",
        endpoint="/transactions/sync",
        error_code="INSTITUTION_NOT_RESPONDING",
        count=2,
    )
    plaid = providers["plaid"]

    assert (await plaid.get_accounts(PLAID_LINK, timeout_s=2.0)).accounts
    for _ in range(2):
        with pytest.raises(ProviderCallError):
            await plaid.sync_transactions(PLAID_LINK, cursor=None, count=10, timeout_s=2.0)
    page = await plaid.sync_transactions(PLAID_LINK, cursor=None, count=10, timeout_s=2.0)

    assert page.added
    assert (await calls(http, sandbox_url))["plaid"] == {
        "/accounts/get": {"calls": 1, "faulted": 0},
        "/transactions/sync": {"calls": 3, "faulted": 2},
    }


async def test_a_partial_fault_rate_fails_the_same_calls_after_a_reset(
    providers: dict[str, ProviderAdapter], http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    async def outcomes() -> list[bool]:
        await arm(http, sandbox_url, provider="plaid", error_code="INSTITUTION_DOWN", rate=0.5)
        results = []
        for _ in range(20):
            try:
                await providers["plaid"].get_accounts(PLAID_LINK, timeout_s=2.0)
                results.append(True)
            except ProviderCallError:
                results.append(False)
        return results

    first = await outcomes()
    async with http.post(f"{sandbox_url}/_admin/reset"):
        pass
    second = await outcomes()

    assert first == second
    assert 0 < first.count(False) < 20


async def test_clearing_faults_lets_calls_through_and_keeps_the_counts(
    providers: dict[str, ProviderAdapter], http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    await arm(http, sandbox_url, provider="mx", status=500)
    await failure_of(providers["mx"], MX_LINK)
    async with http.delete(f"{sandbox_url}/_admin/faults") as response:
        assert response.status == 200

    assert (await providers["mx"].get_accounts(MX_LINK, timeout_s=2.0)).accounts
    status_calls = (await calls(http, sandbox_url))["mx"][
        "/users/{user_guid}/members/{member_guid}/status"
    ]
    assert status_calls == {"calls": 2, "faulted": 1}


async def test_a_malformed_fault_is_refused_with_a_reason(
    http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    async with http.post(
        f"{sandbox_url}/_admin/faults", json={"provider": "plaid", "rate": 2}
    ) as response:
        assert response.status == 400
        assert "rate" in (await response.json())["error"]

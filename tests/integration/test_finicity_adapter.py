"""The Finicity adapter over real HTTP against the sandbox: every operation, paging, faults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msgspec
import pytest

from services.providers.base import (
    LinkCredentials,
    LinkRequest,
    ProviderCallError,
    TransactionsPage,
    WebhookRejectedError,
)
from services.providers.finicity.adapter import FinicityAdapter
from services.providers.finicity.webhooks import sign
from services.providers.registry import build_providers
from services.providers.settings import ProviderSettings

pytestmark = pytest.mark.integration

PARTNER_SECRET = "partner-secret-2b7d9f4a1c"
APP_KEY = "app-key-5e8c1f3a7b9d"
CUSTOMER = "5011648377"
# The sandbox's data ends on 2025-01-31; its "now" is the day after.
NOW = datetime(2025, 2, 1, tzinfo=UTC).timestamp()
SECRETS = (PARTNER_SECRET, APP_KEY, CUSTOMER)


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def finicity(sandbox: str, http: aiohttp.ClientSession) -> FinicityAdapter:
    return FinicityAdapter(
        http,
        base_url=f"{sandbox}/finicity",
        partner_id="2445583925753",
        partner_secret=PARTNER_SECRET,
        app_key=APP_KEY,
        clock=lambda: NOW,
    )


async def arm(http: aiohttp.ClientSession, sandbox: str, **fault: Any) -> None:
    async with http.post(f"{sandbox}/_admin/faults", json={"provider": "finicity", **fault}) as r:
        assert r.status == 201, await r.text()


async def calls(http: aiohttp.ClientSession, sandbox: str, endpoint: str) -> int:
    async with http.get(f"{sandbox}/_admin/calls") as response:
        counts: dict[str, Any] = await response.json()
    return int(counts.get("finicity", {}).get(endpoint, {}).get("calls", 0))


async def link_for(finicity: FinicityAdapter, customer: str = CUSTOMER) -> LinkCredentials:
    return await finicity.exchange_token(customer, timeout_s=2.0)


async def sync_to_the_end(
    finicity: FinicityAdapter, link: LinkCredentials, count: int, cursor: str | None = None
) -> list[TransactionsPage]:
    pages: list[TransactionsPage] = []
    while not pages or pages[-1].has_more:
        page = await finicity.sync_transactions(link, cursor=cursor, count=count, timeout_s=2.0)
        pages.append(page)
        cursor = page.next_cursor
    return pages


def assert_no_secrets(exc: Exception, *extra: str) -> None:
    for secret in (*SECRETS, *extra):
        assert secret not in str(exc)
        assert secret not in repr(exc)


async def test_exchange_picks_the_newest_login_and_credentials_name_customer_and_login(
    finicity: FinicityAdapter,
) -> None:
    link = await link_for(finicity)

    customer, _, login = link.item_id.partition(":")
    assert (customer, link.access_token, link.provider) == (CUSTOMER, CUSTOMER, "finicity")
    assert login.isdigit()
    again = await finicity.exchange_token(link.item_id, timeout_s=2.0)
    assert again == link


async def test_accounts_are_only_the_links_login_and_normalised(finicity: FinicityAdapter) -> None:
    link = await link_for(finicity)

    page = await finicity.get_accounts(link, timeout_s=2.0)

    assert 2 <= len(page.accounts) <= 3
    for account in page.accounts:
        assert set(account) == {"account_id", "name", "type", "subtype", "mask", "balances"}
        assert account["type"] in {"depository", "credit"}
        assert account["balances"]["iso_currency_code"] == "USD"


async def test_transactions_page_by_record_index_to_the_end_and_only_for_the_link(
    finicity: FinicityAdapter,
) -> None:
    link = await link_for(finicity)
    accounts = {
        a["account_id"] for a in (await finicity.get_accounts(link, timeout_s=2.0)).accounts
    }

    pages = await sync_to_the_end(finicity, link, count=7)

    ids = [t["transaction_id"] for p in pages for t in p.added]
    assert len(pages) >= 3
    assert len(ids) == len(set(ids)) >= 20
    assert {t["account_id"] for p in pages for t in p.added} <= accounts
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]
    assert all(t["date"] <= "2025-01-31" for p in pages for t in p.added)


async def test_the_next_run_rereads_only_the_lookback_window(finicity: FinicityAdapter) -> None:
    link = await link_for(finicity)
    first = await sync_to_the_end(finicity, link, count=50)

    rerun = await sync_to_the_end(finicity, link, count=50, cursor=first[-1].next_cursor)

    seen = {t["transaction_id"] for p in first for t in p.added}
    again = [t for p in rerun for t in p.added]
    assert again and {t["transaction_id"] for t in again} <= seen
    assert min(t["date"] for t in again) >= "2025-01-16"


async def test_a_cursor_from_elsewhere_is_a_validation_error(finicity: FinicityAdapter) -> None:
    link = await link_for(finicity)

    with pytest.raises(ProviderCallError) as caught:
        await finicity.sync_transactions(link, cursor="bv1.abc", count=5, timeout_s=2.0)

    assert (caught.value.error.code, caught.value.error.type) == ("invalid_cursor", "validation")


async def test_one_app_token_serves_many_calls_and_a_refused_one_is_renewed_once(
    finicity: FinicityAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    auth = "/aggregation/v2/partners/authentication"
    link = await link_for(finicity)
    await finicity.get_accounts(link, timeout_s=2.0)
    assert await calls(http, sandbox, auth) == 1

    await arm(http, sandbox, endpoint="/accounts", status=401, error_code="10023", count=1)
    page = await finicity.get_accounts(link, timeout_s=2.0)

    assert page.accounts
    assert await calls(http, sandbox, auth) == 2


async def test_create_link_makes_one_customer_per_person_and_fix_mode_names_the_login(
    finicity: FinicityAdapter,
) -> None:
    request = LinkRequest(user_ref="user-7f3a", redirect_uri="https://app.example/done")

    first = await finicity.create_link(request, timeout_s=2.0)
    second = await finicity.create_link(request, timeout_s=2.0)
    link = await link_for(finicity)
    fix = await finicity.create_link(
        LinkRequest(user_ref="user-7f3a", update_link=link), timeout_s=2.0
    )
    lite = await finicity.create_link(
        LinkRequest(user_ref="user-7f3a", institution_id="102105"), timeout_s=2.0
    )

    assert first.url and first.url.startswith("https://connect2.finicity.com?customerId=")
    assert first.token == first.url and first.expires_at is not None
    assert first.url == second.url
    assert fix.url and "type=fix" in fix.url and f"customerId={CUSTOMER}" in fix.url
    assert lite.url and "type=lite" in lite.url


async def test_removing_a_login_is_idempotent_and_the_link_then_needs_relinking(
    finicity: FinicityAdapter,
) -> None:
    link = await link_for(finicity, "5099000001")

    await finicity.remove_item(link, timeout_s=2.0)
    await finicity.remove_item(link, timeout_s=2.0)

    with pytest.raises(ProviderCallError) as caught:
        await finicity.get_accounts(link, timeout_s=2.0)
    assert (caught.value.error.code, caught.value.reauth_required) == ("38007", True)


async def test_institutions_can_be_searched_and_fetched(finicity: FinicityAdapter) -> None:
    found = await finicity.search_institutions(
        "bank", country_codes=("US",), limit=3, timeout_s=2.0
    )

    assert 1 <= len(found) <= 3
    assert all("bank" in i.name.lower() and i.country_codes == ("US",) for i in found)
    one = await finicity.get_institution(found[0].institution_id, timeout_s=2.0)
    assert one == found[0]


async def test_health_reflects_whether_finicity_answers(
    finicity: FinicityAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    assert (await finicity.health_check(timeout_s=2.0)).healthy

    await arm(http, sandbox, endpoint="/institution/v2/institutions", status=503)

    status = await finicity.health_check(timeout_s=2.0)
    assert (status.healthy, status.detail) == (False, "maintenance/503")


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"error_code": "103"}, ("103", "auth", False, True)),
        ({"error_code": "185"}, ("185", "auth", False, True)),
        ({"error_code": "102"}, ("102", "provider_down", True, False)),
        ({"error_code": "320"}, ("320", "maintenance", True, False)),
        ({"endpoint": "/transactions", "error_code": "108"}, ("108", "auth", False, True)),
        (
            {"endpoint": "/transactions", "error_code": "10005"},
            ("10005", "validation", False, False),
        ),
        ({"status": 429, "retry_after_s": 7}, ("429", "rate_limit", True, False)),
        ({"status": 503}, ("503", "maintenance", True, False)),
        ({"status": 502, "body": "garbage"}, ("http_502", "provider_down", True, False)),
        (
            {"body": "truncated", "endpoint": "/transactions"},
            ("invalid_response", "unknown", True, False),
        ),
    ],
)
async def test_each_injected_finicity_fault_is_classified(
    finicity: FinicityAdapter,
    http: aiohttp.ClientSession,
    sandbox: str,
    fault: dict[str, Any],
    expected: tuple[str, str, bool, bool],
) -> None:
    link = await link_for(finicity)
    await arm(http, sandbox, **fault)

    with pytest.raises(ProviderCallError) as caught:
        await sync_to_the_end(finicity, link, count=25)

    exc = caught.value
    assert (exc.error.code, exc.error.type, exc.error.retryable, exc.reauth_required) == expected
    assert exc.error.provider == "finicity"
    assert_no_secrets(exc)
    if "retry_after_s" in fault:
        assert exc.retry_after_s == 7.0


async def test_latency_beyond_the_deadline_is_a_network_timeout(
    finicity: FinicityAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    link = await link_for(finicity)
    await arm(http, sandbox, endpoint="/accounts", latency_ms=600)
    started = time.monotonic()

    with pytest.raises(ProviderCallError) as caught:
        await finicity.get_accounts(link, timeout_s=0.15)

    assert time.monotonic() - started < 0.5
    assert (caught.value.error.code, caught.value.error.type) == ("timeout", "network")
    assert_no_secrets(caught.value)


async def test_webhooks_signed_with_the_partner_secret_are_accepted_and_others_refused(
    finicity: FinicityAdapter,
) -> None:
    raw = msgspec.json.encode(
        {
            "customerId": CUSTOMER,
            "eventType": "added",
            "eventId": f"{int(NOW * 1000)}-0e73d1719173766fe4dfe1a8",
            "payload": {"accounts": [{"id": "7077265539", "institutionLoginId": 1007302745}]},
        }
    )
    good = {"X-Finicity-Signature": sign(raw, PARTNER_SECRET)}

    event = await finicity.handle_webhook(good, raw, now=NOW + 5, timeout_s=1.0)

    assert (event.kind, event.public_token) == ("public_token", f"{CUSTOMER}:1007302745")
    for headers, now in (
        ({}, NOW),
        ({"X-Finicity-Signature": sign(raw, "another-partners-secret")}, NOW),
        (good, NOW + 3600),
    ):
        with pytest.raises(WebhookRejectedError) as caught:
            await finicity.handle_webhook(headers, raw, now=now, timeout_s=1.0)
        assert_no_secrets(caught.value)


async def test_the_registry_builds_finicity_from_settings(
    sandbox: str, http: aiohttp.ClientSession
) -> None:
    settings = ProviderSettings(
        name="finicity",
        base_url=f"{sandbox}/finicity",
        client_id="2445583925753",
        secret=f"{APP_KEY}:{PARTNER_SECRET}",
    )

    adapter = build_providers(http, {"finicity": settings})["finicity"]

    assert (await adapter.health_check(timeout_s=2.0)).healthy
    link = await adapter.exchange_token(CUSTOMER, timeout_s=2.0)
    assert (await adapter.get_accounts(link, timeout_s=2.0)).accounts


async def test_a_customer_id_made_for_another_person_is_refused_at_exchange(
    finicity: FinicityAdapter,
) -> None:
    await finicity.create_link(LinkRequest(user_ref="person-mine"), timeout_s=2.0)
    theirs = await finicity.create_link(LinkRequest(user_ref="person-theirs"), timeout_s=2.0)
    # The Connect URL names the customer it was made for, as Finicity's does.
    their_customer = parse_qs(urlsplit(theirs.token).query)["customerId"][0]

    for token in (their_customer, f"{their_customer}:1007302745"):
        with pytest.raises(ProviderCallError) as caught:
            await finicity.exchange_token_for(token, user_ref="person-mine", timeout_s=2.0)
        error = caught.value.error
        assert (error.code, error.type, error.retryable) == (
            "completion_not_for_this_person",
            "validation",
            False,
        )
        assert_no_secrets(caught.value, their_customer)
    assert await finicity.belongs_to(their_customer, user_ref="person-theirs", timeout_s=2.0)
    # A customer no person of ours was given (the bare seeded one) is nobody's.
    assert not await finicity.belongs_to(CUSTOMER, user_ref="person-mine", timeout_s=2.0)

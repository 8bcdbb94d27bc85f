"""The Belvo adapter over real HTTP against the sandbox: every operation, paging, faults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
from services.providers.belvo.adapter import BelvoAdapter
from services.providers.registry import build_providers
from services.providers.settings import ProviderSettings

pytestmark = pytest.mark.integration

SECRET_ID = "belvo-secret-id-4c1e"
SECRET_PASSWORD = "belvo-secret-password-9d7b2a"
WEBHOOK_AUTH = "Bearer 7c0f5e2a9b1d4e6f"
BANK_PASSWORD = "full-access-5512"
NOW = datetime(2025, 2, 1, tzinfo=UTC).timestamp()
SECRETS = (SECRET_ID, SECRET_PASSWORD, BANK_PASSWORD)


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def belvo(sandbox: str, http: aiohttp.ClientSession) -> BelvoAdapter:
    return BelvoAdapter(
        http,
        base_url=f"{sandbox}/belvo",
        secret_id=SECRET_ID,
        secret_password=SECRET_PASSWORD,
        webhook_authorization=WEBHOOK_AUTH,
        clock=lambda: NOW,
    )


@pytest.fixture
async def institution(belvo: BelvoAdapter) -> str:
    found = await belvo.search_institutions("", country_codes=("MX",), limit=10, timeout_s=2.0)
    return found[0].institution_id


Arm = Callable[..., Awaitable[None]]


@pytest.fixture
def armed(http: aiohttp.ClientSession, sandbox: str) -> Arm:
    """Arms a Belvo fault in the sandbox."""

    async def arm_fault(**fault: Any) -> None:
        await arm(http, sandbox, **fault)

    return arm_fault


async def register(belvo: BelvoAdapter, institution: str, username: str) -> LinkCredentials:
    return await belvo.register_link(institution, username, BANK_PASSWORD, timeout_s=2.0)


async def arm(http: aiohttp.ClientSession, sandbox: str, **fault: Any) -> None:
    async with http.post(f"{sandbox}/_admin/faults", json={"provider": "belvo", **fault}) as r:
        assert r.status == 201, await r.text()


async def sync_to_the_end(
    belvo: BelvoAdapter, link: LinkCredentials, count: int, cursor: str | None = None
) -> list[TransactionsPage]:
    pages: list[TransactionsPage] = []
    while not pages or pages[-1].has_more:
        page = await belvo.sync_transactions(link, cursor=cursor, count=count, timeout_s=2.0)
        pages.append(page)
        cursor = page.next_cursor
    return pages


def assert_no_secrets(exc: Exception, *extra: str) -> None:
    for secret in (*SECRETS, *extra):
        assert secret not in str(exc)
        assert secret not in repr(exc)


async def test_a_registered_link_exchanges_for_credentials_naming_the_link(
    belvo: BelvoAdapter, institution: str
) -> None:
    link = await register(belvo, institution, "ana")

    exchanged = await belvo.exchange_token(link.item_id, timeout_s=2.0)

    assert exchanged == link
    assert link.item_id == link.access_token


async def test_accounts_are_normalised_with_balances(belvo: BelvoAdapter, institution: str) -> None:
    link = await register(belvo, institution, "ana")

    page = await belvo.get_accounts(link, timeout_s=2.0)

    assert 2 <= len(page.accounts) <= 3
    for account in page.accounts:
        assert set(account) == {"account_id", "name", "type", "subtype", "mask", "balances"}
        assert account["type"] in {"depository", "credit"}
        assert account["balances"]["iso_currency_code"] == "MXN"


async def test_transactions_follow_next_to_the_end_and_a_rerun_brings_only_new_ones(
    belvo: BelvoAdapter, institution: str
) -> None:
    link = await register(belvo, institution, "ana")
    accounts = {a["account_id"] for a in (await belvo.get_accounts(link, timeout_s=2.0)).accounts}

    pages = await sync_to_the_end(belvo, link, count=9)

    ids = [t["transaction_id"] for p in pages for t in p.added]
    assert len(pages) >= 3
    assert len(ids) == len(set(ids)) >= 20
    assert {t["account_id"] for p in pages for t in p.added} <= accounts
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]
    assert any(t["amount"] < 0 for p in pages for t in p.added)
    rerun = await sync_to_the_end(belvo, link, count=9, cursor=pages[-1].next_cursor)
    assert (rerun[0].added, rerun[0].has_more) == ([], False)


async def test_a_cursor_of_another_link_is_refused(belvo: BelvoAdapter, institution: str) -> None:
    ana = await register(belvo, institution, "ana")
    bob = await register(belvo, institution, "bob")
    first = await belvo.sync_transactions(ana, cursor=None, count=5, timeout_s=2.0)

    with pytest.raises(ProviderCallError) as caught:
        await belvo.sync_transactions(bob, cursor=first.next_cursor, count=5, timeout_s=2.0)

    assert (caught.value.error.code, caught.value.error.type) == ("invalid_cursor", "validation")
    assert_no_secrets(caught.value, ana.item_id, bob.item_id)


async def test_a_refused_bank_login_needs_the_person(belvo: BelvoAdapter, institution: str) -> None:
    with pytest.raises(ProviderCallError) as caught:
        await belvo.register_link(institution, "ana", "invalid", timeout_s=2.0)

    assert (caught.value.error.code, caught.value.reauth_required) == ("login_error", True)
    assert_no_secrets(caught.value)


async def test_create_link_opens_the_widget_with_a_short_lived_token(belvo: BelvoAdapter) -> None:
    token = await belvo.create_link(
        LinkRequest(user_ref="user-7f3a", country_codes=("MX",), language="es"), timeout_s=2.0
    )

    assert token.url is not None
    query = parse_qs(urlsplit(token.url).query)
    assert token.url.startswith("https://widget.belvo.io/?")
    assert query["access_token"] == [token.token]
    assert (query["locale"], query["country_codes"]) == (["es"], ["MX"])
    assert token.expires_at == "2025-02-01T00:10:00+00:00"


async def test_removing_a_link_is_idempotent(belvo: BelvoAdapter, institution: str) -> None:
    link = await register(belvo, institution, "carla")

    await belvo.remove_item(link, timeout_s=2.0)
    await belvo.remove_item(link, timeout_s=2.0)

    with pytest.raises(ProviderCallError) as caught:
        await belvo.exchange_token(link.item_id, timeout_s=2.0)
    assert caught.value.http_status == 404
    assert_no_secrets(caught.value, link.item_id)


async def test_institutions_can_be_searched_and_fetched(belvo: BelvoAdapter) -> None:
    found = await belvo.search_institutions("banco", country_codes=("MX",), limit=5, timeout_s=2.0)

    assert found and all(i.country_codes == ("MX",) for i in found)
    assert all(i.institution_id.endswith("_mx_retail") for i in found)
    assert await belvo.get_institution(found[0].institution_id, timeout_s=2.0) == found[0]


async def test_health_reflects_whether_belvo_answers(
    belvo: BelvoAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    assert (await belvo.health_check(timeout_s=2.0)).healthy

    await arm(http, sandbox, endpoint="/api/institutions/", status=503)

    status = await belvo.health_check(timeout_s=2.0)
    assert (status.healthy, status.detail) == (False, "provider_down/service_unavailable")


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"error_code": "login_error"}, ("login_error", "auth", False, True)),
        ({"error_code": "session_expired"}, ("session_expired", "auth", False, True)),
        ({"error_code": "token_required"}, ("token_required", "auth", False, True)),
        ({"error_code": "too_many_sessions"}, ("too_many_sessions", "rate_limit", True, False)),
        ({"error_code": "institution_down"}, ("institution_down", "provider_down", True, False)),
        ({"error_code": "request_timeout"}, ("request_timeout", "provider_down", True, False)),
        ({"status": 429, "retry_after_s": 5}, ("too_many_requests", "rate_limit", True, False)),
        ({"status": 500}, ("unexpected_error", "provider_down", True, False)),
        ({"status": 401}, ("authentication_failed", "auth", False, False)),
        ({"status": 502, "body": "garbage"}, ("http_502", "provider_down", True, False)),
        (
            {"body": "truncated", "endpoint": "/api/transactions/"},
            ("invalid_response", "unknown", True, False),
        ),
    ],
)
async def test_each_injected_belvo_fault_is_classified(
    belvo: BelvoAdapter,
    institution: str,
    armed: Arm,
    fault: dict[str, Any],
    expected: tuple[str, str, bool, bool],
) -> None:
    link = await register(belvo, institution, "ana")
    await armed(**fault)

    with pytest.raises(ProviderCallError) as caught:
        await sync_to_the_end(belvo, link, count=25)

    exc = caught.value
    assert (exc.error.code, exc.error.type, exc.error.retryable, exc.reauth_required) == expected
    assert exc.error.provider == "belvo"
    assert_no_secrets(exc, link.item_id)
    if "retry_after_s" in fault:
        assert exc.retry_after_s == 5.0


async def test_latency_beyond_the_deadline_is_a_network_timeout(
    belvo: BelvoAdapter, institution: str, http: aiohttp.ClientSession, sandbox: str
) -> None:
    link = await register(belvo, institution, "ana")
    await arm(http, sandbox, endpoint="/api/accounts/", latency_ms=600)
    started = time.monotonic()

    with pytest.raises(ProviderCallError) as caught:
        await belvo.get_accounts(link, timeout_s=0.15)

    assert time.monotonic() - started < 0.5
    assert (caught.value.error.code, caught.value.error.type) == ("timeout", "network")
    assert_no_secrets(caught.value, link.item_id)


async def test_webhooks_need_the_authorization_value_set_in_belvos_dashboard(
    belvo: BelvoAdapter,
) -> None:
    raw = msgspec.json.encode(
        {
            "webhook_id": "aadf41a1fc8e4f79a49f7f04027ac999",
            "webhook_type": "TRANSACTIONS",
            "webhook_code": "new_transactions_available",
            "link_id": "16f68516-bcbc-4cf7-b815-c500d4204e28",
            "data": {"new_transactions": 3},
        }
    )

    event = await belvo.handle_webhook({"Authorization": WEBHOOK_AUTH}, raw, now=NOW, timeout_s=1.0)

    assert event.kind == "transactions_updated"
    for headers in ({}, {"Authorization": "Bearer forged"}, {"Authorization": "Basic YTpi"}):
        with pytest.raises(WebhookRejectedError) as caught:
            await belvo.handle_webhook(headers, raw, now=NOW, timeout_s=1.0)
        assert_no_secrets(caught.value, WEBHOOK_AUTH)


async def test_the_registry_builds_belvo_from_settings(
    sandbox: str, http: aiohttp.ClientSession, institution: str
) -> None:
    settings = ProviderSettings(
        name="belvo",
        base_url=f"{sandbox}/belvo",
        client_id=SECRET_ID,
        secret=SECRET_PASSWORD,
        webhook_secret=WEBHOOK_AUTH,
    )

    adapter = build_providers(http, {"belvo": settings})["belvo"]

    assert isinstance(adapter, BelvoAdapter)
    link = await register(adapter, institution, "dora")
    assert (await adapter.get_accounts(link, timeout_s=2.0)).accounts


async def test_a_link_made_for_another_person_is_refused_at_exchange(
    belvo: BelvoAdapter, institution: str
) -> None:
    theirs = await belvo.register_link(
        institution, "zoe-bound", BANK_PASSWORD, user_ref="person-theirs", timeout_s=2.0
    )
    unowned = await register(belvo, institution, "ana-unbound")

    for link_id in (theirs.item_id, unowned.item_id):
        with pytest.raises(ProviderCallError) as caught:
            await belvo.exchange_token_for(link_id, user_ref="person-mine", timeout_s=2.0)
        error = caught.value.error
        assert (error.code, error.type, error.retryable) == (
            "completion_not_for_this_person",
            "validation",
            False,
        )
        assert_no_secrets(caught.value, link_id)
    owned = await belvo.exchange_token_for(theirs.item_id, user_ref="person-theirs", timeout_s=2.0)
    assert owned == theirs

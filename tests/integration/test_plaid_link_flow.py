"""Plaid's link, Item, institution and webhook operations against the sandbox over HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from services.providers.base import (
    LinkCredentials,
    LinkRequest,
    ProviderCallError,
    WebhookRejectedError,
)
from services.providers.plaid.adapter import PlaidAdapter
from tests.integration.webhook_receiver import Receiver, receiving_webhooks

pytestmark = pytest.mark.integration

SECRET = "plaid-secret-1a2b3c4d5e6f"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def plaid(sandbox: str, http: aiohttp.ClientSession) -> PlaidAdapter:
    return PlaidAdapter(http, base_url=f"{sandbox}/plaid", client_id="client-1", secret=SECRET)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving_webhooks() as r:
        yield r


async def admin(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body) as response:
        assert response.status in (200, 201), await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def linked(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> LinkCredentials:
    """The whole link flow: link token, the person finishes, webhook, exchange."""
    token = await plaid.create_link(
        LinkRequest(user_ref="user-42", webhook_url=receiver.url), timeout_s=2.0
    )
    await admin(http, f"{sandbox}/_admin/links/plaid/complete", {"link_token": token.token})
    delivery = await receiver.next()
    event = await plaid.handle_webhook(
        delivery.headers, delivery.body, now=time.time(), timeout_s=2.0
    )
    assert event.kind == "public_token" and event.public_token
    return await plaid.exchange_token(event.public_token, timeout_s=2.0)


async def test_a_link_token_is_created_with_an_expiry(plaid: PlaidAdapter) -> None:
    token = await plaid.create_link(LinkRequest(user_ref="user-42"), timeout_s=2.0)

    assert token.token.startswith("link-sandbox-")
    assert token.expires_at and token.request_id


async def test_the_finished_link_s_webhook_verifies_and_its_token_exchanges_for_working_access(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> None:
    link = await linked(plaid, http, sandbox, receiver)

    assert link.provider == "plaid" and link.access_token.startswith("access-sandbox-")
    assert (await plaid.get_accounts(link, timeout_s=2.0)).accounts


async def test_a_public_token_exchanges_only_once(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    token = await plaid.create_link(LinkRequest(user_ref="user-42"), timeout_s=2.0)
    done = await admin(http, f"{sandbox}/_admin/links/plaid/complete", {"link_token": token.token})
    await plaid.exchange_token(done["public_token"], timeout_s=2.0)

    with pytest.raises(ProviderCallError) as caught:
        await plaid.exchange_token(done["public_token"], timeout_s=2.0)

    assert (caught.value.error.code, caught.value.error.type) == (
        "INVALID_PUBLIC_TOKEN",
        "validation",
    )
    assert done["public_token"] not in str(caught.value)


async def test_a_forged_webhook_is_refused(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> None:
    token = await plaid.create_link(
        LinkRequest(user_ref="user-42", webhook_url=receiver.url), timeout_s=2.0
    )
    await admin(http, f"{sandbox}/_admin/links/plaid/complete", {"link_token": token.token})
    delivery = await receiver.next()
    forged = delivery.body.replace(b"SESSION_FINISHED", b"SESSION_FINISHEX")

    with pytest.raises(WebhookRejectedError, match="body does not match"):
        await plaid.handle_webhook(delivery.headers, forged, now=time.time(), timeout_s=2.0)
    with pytest.raises(WebhookRejectedError, match="outside the 300s window"):
        await plaid.handle_webhook(
            delivery.headers, delivery.body, now=time.time() + 600, timeout_s=2.0
        )


async def test_update_mode_passes_the_item_s_access_token_and_repairs_in_place(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> None:
    link = await linked(plaid, http, sandbox, receiver)
    request = LinkRequest(user_ref="user-42", webhook_url=receiver.url, update_link=link)

    token = await plaid.create_link(request, timeout_s=2.0)
    done = await admin(http, f"{sandbox}/_admin/links/plaid/complete", {"link_token": token.token})
    delivery = await receiver.next()
    event = await plaid.handle_webhook(
        delivery.headers, delivery.body, now=time.time(), timeout_s=2.0
    )

    assert done["public_token"] is None
    assert (event.kind, event.item_id) == ("login_repaired", link.item_id)
    assert event.raw["webhook_code"] == "LOGIN_REPAIRED"


async def test_removing_an_item_is_counted_idempotent_and_final(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> None:
    link = await linked(plaid, http, sandbox, receiver)

    await plaid.remove_item(link, timeout_s=2.0)
    await plaid.remove_item(link, timeout_s=2.0)

    async with http.get(f"{sandbox}/_admin/calls") as response:
        calls = (await response.json())["plaid"]
    assert calls["/item/remove"]["calls"] == 2
    with pytest.raises(ProviderCallError) as caught:
        await plaid.get_accounts(link, timeout_s=2.0)
    assert (caught.value.error.code, caught.value.reauth_required) == ("ITEM_NOT_FOUND", True)


async def test_institutions_are_found_by_id_and_by_name(plaid: PlaidAdapter) -> None:
    found = await plaid.search_institutions(
        "platypus", country_codes=("US",), limit=5, timeout_s=2.0
    )
    assert [i.name for i in found] == ["First Platypus Bank"]

    one = await plaid.get_institution(found[0].institution_id, timeout_s=2.0)

    assert one == found[0]
    assert "transactions" in one.products and one.country_codes == ("US",)
    with pytest.raises(ProviderCallError) as caught:
        await plaid.get_institution("ins_nope", timeout_s=2.0)
    assert caught.value.error.code == "INVALID_INSTITUTION"


async def test_health_check_is_healthy_until_plaid_fails(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    assert (await plaid.health_check(timeout_s=2.0)).healthy
    await admin(
        http,
        f"{sandbox}/_admin/faults",
        {"provider": "plaid", "error_code": "INTERNAL_SERVER_ERROR"},
    )

    status = await plaid.health_check(timeout_s=2.0)

    assert not status.healthy
    assert status.detail == "provider_down/INTERNAL_SERVER_ERROR"

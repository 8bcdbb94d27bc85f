"""MX's Connect widget, members, institutions and webhooks against the sandbox over HTTP."""

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
from services.providers.mx.adapter import MxAdapter
from services.providers.mx.webhooks import BasicCredentials
from tests.integration.webhook_receiver import Receiver, receiving_webhooks

pytestmark = pytest.mark.integration

API_KEY = "mx-api-key-0a9b8c7d6e5f"
HOOK_USER, HOOK_PASSWORD = "syncyard-hooks", "hook-password-1q2w3e4r"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def mx(sandbox: str, http: aiohttp.ClientSession) -> MxAdapter:
    return MxAdapter(
        http,
        base_url=f"{sandbox}/mx",
        client_id="client-1",
        api_key=API_KEY,
        webhook_credentials=BasicCredentials(HOOK_USER, HOOK_PASSWORD),
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving_webhooks() as r:
        yield r


async def complete(http: aiohttp.ClientSession, sandbox: str, **body: Any) -> dict[str, Any]:
    async with http.post(f"{sandbox}/_admin/links/mx/complete", json=body) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def linked(
    mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> LinkCredentials:
    widget = await mx.create_link(LinkRequest(user_ref="user-7"), timeout_s=2.0)
    await complete(
        http,
        sandbox,
        link_token=widget.url,
        webhook_url=receiver.url,
        webhook_username=HOOK_USER,
        webhook_password=HOOK_PASSWORD,
    )
    delivery = await receiver.next()
    event = await mx.handle_webhook(delivery.headers, delivery.body, now=time.time(), timeout_s=2.0)
    assert event.kind == "public_token" and event.public_token
    return await mx.exchange_token(event.public_token, timeout_s=2.0)


async def test_a_link_is_a_connect_widget_url_for_one_user_per_person(mx: MxAdapter) -> None:
    first = await mx.create_link(LinkRequest(user_ref="user-7"), timeout_s=2.0)
    second = await mx.create_link(LinkRequest(user_ref="user-7"), timeout_s=2.0)

    assert first.url and "/widgets/connect/" in first.url and first.token == first.url
    assert second.url != first.url


async def test_the_member_webhook_authenticates_and_exchanges_for_a_working_link(
    mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> None:
    link = await linked(mx, http, sandbox, receiver)

    assert link.item_id.startswith("MBR-") and link.access_token.startswith("USR-")
    assert (await mx.get_accounts(link, timeout_s=2.0)).accounts


async def test_a_webhook_without_mx_s_credentials_is_refused(
    mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> None:
    widget = await mx.create_link(LinkRequest(user_ref="user-7"), timeout_s=2.0)
    await complete(http, sandbox, link_token=widget.url, webhook_url=receiver.url)
    delivery = await receiver.next()

    with pytest.raises(WebhookRejectedError, match="no Authorization header"):
        await mx.handle_webhook(delivery.headers, delivery.body, now=time.time(), timeout_s=2.0)


async def test_update_mode_opens_the_widget_on_the_existing_member(
    mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> None:
    link = await linked(mx, http, sandbox, receiver)

    widget = await mx.create_link(LinkRequest(user_ref="user-7", update_link=link), timeout_s=2.0)
    done = await complete(http, sandbox, link_token=widget.url)

    assert done["member_guid"] == link.item_id


async def test_removing_a_member_is_counted_idempotent_and_final(
    mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str, receiver: Receiver
) -> None:
    link = await linked(mx, http, sandbox, receiver)

    await mx.remove_item(link, timeout_s=2.0)
    await mx.remove_item(link, timeout_s=2.0)

    async with http.get(f"{sandbox}/_admin/calls") as response:
        calls = (await response.json())["mx"]
    assert calls["/users/{user_guid}/members/{member_guid}"]["calls"] >= 3
    with pytest.raises(ProviderCallError) as caught:
        await mx.get_accounts(link, timeout_s=2.0)
    assert caught.value.error.code == "NOT_FOUND"
    assert link.access_token not in str(caught.value)


async def test_a_malformed_public_token_is_a_validation_error(mx: MxAdapter) -> None:
    with pytest.raises(ProviderCallError) as caught:
        await mx.exchange_token("public-sandbox-123", timeout_s=2.0)

    assert (caught.value.error.code, caught.value.error.type) == (
        "invalid_public_token",
        "validation",
    )


async def test_institutions_are_found_by_code_and_by_name(mx: MxAdapter) -> None:
    found = await mx.search_institutions("banco", country_codes=("MX",), limit=10, timeout_s=2.0)
    assert {i.name for i in found} == {"Banco Rebozo", "Banco Huipil"}

    one = await mx.get_institution(found[0].institution_id, timeout_s=2.0)

    assert one == found[0]
    with pytest.raises(ProviderCallError) as caught:
        await mx.get_institution("no_such_bank", timeout_s=2.0)
    assert caught.value.error.code == "NOT_FOUND"


async def test_health_check_is_healthy_until_mx_fails(
    mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    assert (await mx.health_check(timeout_s=2.0)).healthy
    async with http.post(f"{sandbox}/_admin/faults", json={"provider": "mx", "status": 503}):
        pass

    status = await mx.health_check(timeout_s=2.0)

    assert (status.healthy, status.detail) == (False, "maintenance/SERVICE_UNAVAILABLE")

"""Providers' webhooks about linked items, from the sandbox over HTTP to the connection."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from events.connection import ConsentExpiring, LoginRepaired, ReauthRequired
from infra.bootstrap import Runtime
from services.connections.state import ConnectionState, connection_id_for
from tests.integration.saga_helpers import person_finishes, saga_ended, saga_reaches, start_link
from tests.integration.webhook_receiver import receiving_webhooks
from tests.support.harness import MX_WEBHOOK_CREDENTIALS, SPACE, Client, eventually, register
from tests.support.sandbox_admin import SandboxAdmin

pytestmark = pytest.mark.integration

EXPIRES = "2026-12-11T13:25:17.766Z"


@pytest.fixture
async def admin(sandbox: str) -> AsyncIterator[SandboxAdmin]:
    async with aiohttp.ClientSession() as http:
        yield SandboxAdmin(http, sandbox)


async def state_of(live: Runtime, account: str) -> ConnectionState:
    state = await live.store.get_connection(connection_id_for(SPACE, account))
    assert state is not None
    return state


async def events_of(live: Runtime, account: str, kind: type) -> list[Any]:
    async with live.pool.acquire() as conn:
        stream = await live.reader.read_stream(conn, connection_id_for(SPACE, account))
    return [n.event for n in stream if isinstance(n.event, kind)]


def delivered(answer: dict[str, Any]) -> list[int | None]:
    return [d["webhook_status"] for d in answer["deliveries"]]


async def test_a_consent_notice_delivered_twice_and_sent_again_is_recorded_once(
    syncyard: Runtime, upstream: Client, admin: SandboxAdmin
) -> None:
    assert (await upstream.send(register("sig-1", "plaid"))).success
    url = f"{syncyard.http_url}/v1/webhooks/plaid"
    notice = {
        "webhook_code": "PENDING_EXPIRATION",
        "consent_expiration_time": EXPIRES,
        "webhook_url": url,
    }
    assert delivered(await admin.item_webhook("plaid", "item-sig-1", deliveries=2, **notice)) == [
        200,
        200,
    ]
    # Sent again later: signed anew, the same notice.
    assert delivered(await admin.item_webhook("plaid", "item-sig-1", **notice)) == [200]

    recorded = await events_of(syncyard, "sig-1", ConsentExpiring)
    assert len(recorded) == 1
    assert recorded[0].code == "PENDING_EXPIRATION" and recorded[0].item_id == "item-sig-1"
    assert recorded[0].expires_at.isoformat().startswith("2026-12-11T13:25:17")
    assert (await state_of(syncyard, "sig-1")).consent_expiring[
        "plaid"
    ].code == "PENDING_EXPIRATION"


async def test_login_repaired_for_one_item_leaves_another_items_login_set_aside(
    syncyard: Runtime, upstream: Client, admin: SandboxAdmin
) -> None:
    for account in ("sig-a", "sig-b"):
        assert (await upstream.send(register(account, "plaid"))).success
    url = f"{syncyard.http_url}/v1/webhooks/plaid"
    for item in ("item-sig-a", "item-sig-b"):
        sent = await admin.item_webhook("plaid", item, webhook_code="ERROR", webhook_url=url)
        assert delivered(sent) == [200]
    for account in ("sig-a", "sig-b"):
        assert (await state_of(syncyard, account)).reauth == {"plaid"}

    sent = await admin.item_webhook(
        "plaid", "item-sig-a", webhook_code="LOGIN_REPAIRED", webhook_url=url
    )
    assert delivered(sent) == [200]

    assert (await state_of(syncyard, "sig-a")).reauth == frozenset()
    assert (await state_of(syncyard, "sig-b")).reauth == {"plaid"}
    assert len(await events_of(syncyard, "sig-a", LoginRepaired)) == 1
    assert await events_of(syncyard, "sig-b", LoginRepaired) == []
    assert len(await events_of(syncyard, "sig-b", ReauthRequired)) == 1


async def test_a_forged_or_itemless_webhook_changes_nothing(
    syncyard: Runtime, upstream: Client
) -> None:
    assert (await upstream.send(register("sig-f", "plaid"))).success
    body = b'{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"item-sig-f"}'
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{syncyard.http_url}/v1/webhooks/plaid", data=body) as resp:
            assert resp.status == 401
        async with http.post(f"{syncyard.http_url}/v1/webhooks/nobody", data=body) as resp:
            assert resp.status == 404
    assert (await state_of(syncyard, "sig-f")).reauth == frozenset()


async def test_an_item_linked_through_a_saga_gets_its_consent_notice_at_the_sagas_url(
    syncyard: Runtime, upstream: Client, sandbox: str, admin: SandboxAdmin
) -> None:
    assert syncyard.sagas is not None
    started = await upstream.send(start_link("sig-s", "link-sig-s"))
    assert started.success, started.error
    state = await saga_reaches(syncyard.sagas, "link-sig-s", lambda s: "create_link" in s.outputs)
    assert state.outputs["create_link"]["provider"] == "plaid"
    await person_finishes(sandbox, "plaid", str(state.outputs["create_link"]["link_token"]))
    done = await saga_ended(syncyard.sagas, "link-sig-s")
    assert done.status == "completed", done.status
    item_id = str(done.outputs["exchange_token"]["item_id"])

    # No webhook_url: the sandbox sends to the Item's own webhook, the saga's URL.
    sent = await admin.item_webhook(
        "plaid", item_id, webhook_code="PENDING_DISCONNECT", reason="INSTITUTION_TOKEN_EXPIRATION"
    )
    assert delivered(sent) == [200]
    recorded = await eventually(
        lambda: events_of(syncyard, "sig-s", ConsentExpiring), lambda found: len(found) == 1
    )
    assert recorded[0].reason == "INSTITUTION_TOKEN_EXPIRATION" and recorded[0].expires_at is None


async def test_an_mx_member_challenged_then_connected_again_is_set_aside_then_restored(
    syncyard: Runtime, upstream: Client, admin: SandboxAdmin
) -> None:
    assert (await upstream.send(register("sig-m", "mx"))).success
    username, _, password = MX_WEBHOOK_CREDENTIALS.partition(":")
    member = {
        "user_guid": "USR-sig-m",
        "webhook_url": f"{syncyard.http_url}/v1/webhooks/mx",
        "webhook_username": username,
        "webhook_password": password,
    }
    sent = await admin.item_webhook("mx", "MBR-sig-m", connection_status="CHALLENGED", **member)
    assert delivered(sent) == [200]
    assert (await state_of(syncyard, "sig-m")).reauth == {"mx"}
    sent = await admin.item_webhook("mx", "MBR-sig-m", connection_status="CONNECTED", **member)
    assert delivered(sent) == [200]
    assert (await state_of(syncyard, "sig-m")).reauth == frozenset()
    # Without MX's Basic credentials nothing is read from it.
    forged = {**member, "webhook_password": "guessed"}
    sent = await admin.item_webhook("mx", "MBR-sig-m", connection_status="CHALLENGED", **forged)
    assert delivered(sent) == [401]
    assert (await state_of(syncyard, "sig-m")).reauth == frozenset()


async def a_new_second() -> None:
    """Wait for the clock's next whole second: Plaid signs its webhooks' time in seconds."""
    now = time.time()
    await asyncio.sleep(math.floor(now) + 1 - now)


async def test_a_login_required_signed_before_the_repair_and_delivered_late_changes_nothing(
    syncyard: Runtime, upstream: Client, admin: SandboxAdmin
) -> None:
    assert (await upstream.send(register("sig-late", "plaid"))).success
    url = f"{syncyard.http_url}/v1/webhooks/plaid"
    lost = {"webhook_code": "ERROR", "error_code": "ITEM_LOGIN_REQUIRED"}
    sent = await admin.item_webhook("plaid", "item-sig-late", webhook_url=url, **lost)
    assert delivered(sent) == [200]
    assert (await state_of(syncyard, "sig-late")).reauth == {"plaid"}

    # Plaid says it again, signed a second later; this delivery fails on the way (it
    # lands elsewhere here), and Plaid will send the very same request again.
    await a_new_second()
    async with receiving_webhooks() as elsewhere:
        sent = await admin.item_webhook("plaid", "item-sig-late", webhook_url=elsewhere.url, **lost)
        assert delivered(sent) == [204]
        late = await elsewhere.next()

    # Meanwhile the person logs in again, in a later second.
    await a_new_second()
    sent = await admin.item_webhook(
        "plaid", "item-sig-late", webhook_code="LOGIN_REPAIRED", webhook_url=url
    )
    assert delivered(sent) == [200]
    assert (await state_of(syncyard, "sig-late")).reauth == frozenset()

    # The late resend is older than the repair: it changes nothing.
    headers = {name: late.headers[name] for name in ("Plaid-Verification", "Content-Type")}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=late.body, headers=headers) as r,
    ):
        assert r.status == 200, await r.text()
        assert (await r.json())["recorded"] == []
    assert (await state_of(syncyard, "sig-late")).reauth == frozenset()
    assert len(await events_of(syncyard, "sig-late", ReauthRequired)) == 1

    # A login lost again after the repair is new: the link is set aside.
    sent = await admin.item_webhook("plaid", "item-sig-late", webhook_url=url, **lost)
    assert delivered(sent) == [200]
    assert (await state_of(syncyard, "sig-late")).reauth == {"plaid"}

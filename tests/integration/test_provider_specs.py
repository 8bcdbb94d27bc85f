"""Plaid's and MX's official OpenAPI documents against our adapters and the sandbox, on the wire.

Each adapter talks to the sandbox through a recording proxy for a whole link's
life (link, exchange, accounts, transactions paged to the end and again after
the bank moves on, institutions, update mode, removal); every request the
adapter sent and every answer the sandbox gave must match the provider's
spec (`tests/specs`). MX's spec is vendored; Plaid's is fetched (its
repository states no licence): without it the Plaid tests are skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from services.providers.base import LinkCredentials, LinkRequest, ProviderAdapter
from services.providers.mx.adapter import MxAdapter
from services.providers.plaid.adapter import PlaidAdapter
from tests.specs.openapi import Exchange, Provider, Spec, load_spec, request_problems
from tests.specs.openapi import response_problems as answer_problems
from tests.specs.recorder import Recorder, recording_proxy

pytestmark = pytest.mark.integration

PERSON = "spec-ana"
# Fields the sandbox sends that the spec does not document, each for a reason.
MX_EXTENSIONS = (
    # MX's spec has no deleted flag and lists no deleted transaction: the sandbox
    # keeps withdrawn ones in `from_updated_at` lists, marked so, and the adapter
    # reports them as removed. See sandbox/README.md ("Checked against the specs").
    "transactions[].is_deleted",
)
PLAID_OPERATIONS = {
    "POST /link/token/create",
    "POST /item/public_token/exchange",
    "POST /accounts/get",
    "POST /transactions/sync",
    "POST /item/remove",
    "POST /institutions/get_by_id",
    "POST /institutions/get",
    "POST /institutions/search",
}
MX_OPERATIONS = {
    "GET /users",
    "POST /users",
    "POST /users/{user_guid}/widget_urls",
    "GET /users/{user_guid}/members/{member_guid}",
    "DELETE /users/{user_guid}/members/{member_guid}",
    "GET /users/{user_guid}/members/{member_guid}/status",
    "GET /users/{user_guid}/members/{member_guid}/accounts",
    "GET /users/{user_guid}/members/{member_guid}/transactions",
    "GET /institutions",
    "GET /institutions/{institution_code}",
}


def spec_of(provider: Provider) -> Spec:
    spec = load_spec(provider)
    if spec is None:
        pytest.skip(
            f"{provider}'s OpenAPI document is not here: python -m tests.specs.refresh {provider}"
        )
    return spec


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def proxy(sandbox: str) -> AsyncIterator[Recorder]:
    async with recording_proxy(sandbox) as recorder:
        yield recorder


async def admin(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body) as response:
        assert response.status in (200, 201), await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def sync_to_the_end(
    adapter: ProviderAdapter, link: LinkCredentials, cursor: str | None, count: int
) -> str:
    while True:
        page = await adapter.sync_transactions(link, cursor=cursor, count=count, timeout_s=5.0)
        cursor = page.next_cursor
        if not page.has_more:
            return cursor


def problems_in(spec: Spec, exchanges: list[Exchange], extensions: tuple[str, ...] = ()) -> str:
    found = [
        p
        for e in exchanges
        for p in [
            *request_problems(spec, e),
            *answer_problems(spec, e, allowed_extensions=extensions),
        ]
    ]
    return "\n".join(found)


def operations(spec: Spec, exchanges: list[Exchange]) -> set[str]:
    found = set()
    for e in exchanges:
        operation = spec.operation(e.method, e.path)
        if operation is not None:
            found.add(f"{operation.method} {operation.template}")
    return found


async def test_every_plaid_call_of_a_link_s_whole_life_and_every_answer_match_plaid_s_spec(
    proxy: Recorder, http: aiohttp.ClientSession, sandbox: str
) -> None:
    spec = spec_of("plaid")
    plaid = PlaidAdapter(http, base_url=f"{proxy.url}/plaid", client_id="c", secret="plaid-s3")
    request = LinkRequest(
        user_ref=PERSON,
        webhook_url=f"{proxy.url}/hooks/plaid",
        redirect_uri="https://app.example/oauth",
    )
    token = await plaid.create_link(request, timeout_s=5.0)
    done = await admin(http, f"{sandbox}/_admin/links/plaid/complete", {"link_token": token.token})
    link = await plaid.exchange_token(done["public_token"], timeout_s=5.0)
    await plaid.get_accounts(link, timeout_s=5.0)
    cursor = await sync_to_the_end(plaid, link, None, count=60)
    cursor = await sync_to_the_end(plaid, link, cursor, count=60)
    # An Item made long ago (a bare token), across the bank's changes.
    old = LinkCredentials(provider="plaid", item_id="i", access_token=f"access-sandbox-{PERSON}")
    first = await sync_to_the_end(plaid, old, None, count=500)
    await admin(http, f"{sandbox}/_admin/truth/{PERSON}/advance", {"days": 15})
    await sync_to_the_end(plaid, old, first, count=25)
    update = LinkRequest(user_ref=PERSON, update_link=link)
    await plaid.create_link(update, timeout_s=5.0)
    found = await plaid.search_institutions("bank", country_codes=("US",), limit=3, timeout_s=5.0)
    await plaid.get_institution(found[0].institution_id, timeout_s=5.0)
    assert (await plaid.health_check(timeout_s=5.0)).healthy
    await plaid.remove_item(link, timeout_s=5.0)
    await plaid.remove_item(link, timeout_s=5.0)  # ITEM_NOT_FOUND: Plaid's error body

    exchanges = proxy.of("plaid")
    assert operations(spec, exchanges) == PLAID_OPERATIONS
    assert any(e.status == 400 for e in exchanges)
    assert problems_in(spec, exchanges) == ""


async def test_every_mx_call_of_a_link_s_whole_life_and_every_answer_match_mx_s_spec(
    proxy: Recorder, http: aiohttp.ClientSession, sandbox: str
) -> None:
    spec = spec_of("mx")
    mx = MxAdapter(http, base_url=f"{proxy.url}/mx", client_id="c", api_key="mx-k3y")
    institutions = await mx.search_institutions("", country_codes=("US",), limit=3, timeout_s=5.0)
    request = LinkRequest(
        user_ref=PERSON,
        institution_id=institutions[0].institution_id,
        redirect_uri="https://app.example/mx",
    )
    widget = await mx.create_link(request, timeout_s=5.0)
    await mx.create_link(request, timeout_s=5.0)  # the user exists: found, not created
    done = await admin(http, f"{sandbox}/_admin/links/mx/complete", {"link_token": widget.token})
    link = await mx.exchange_token(done["public_token"], timeout_s=5.0)
    await mx.get_accounts(link, timeout_s=5.0)
    await sync_to_the_end(mx, link, None, count=100)
    # A member made long ago (bare guids), across the bank's changes: from_updated_at.
    old = LinkCredentials(provider="mx", item_id=f"MBR-{PERSON}", access_token=f"USR-{PERSON}")
    first = await sync_to_the_end(mx, old, None, count=10)
    await admin(http, f"{sandbox}/_admin/truth/{PERSON}/advance", {"days": 15})
    await sync_to_the_end(mx, old, first, count=10)
    await mx.create_link(LinkRequest(user_ref=PERSON, update_link=link), timeout_s=5.0)
    await mx.get_institution(institutions[0].institution_id, timeout_s=5.0)
    assert (await mx.health_check(timeout_s=5.0)).healthy
    await mx.remove_item(link, timeout_s=5.0)

    exchanges = proxy.of("mx")
    assert operations(spec, exchanges) == MX_OPERATIONS
    assert any("from_updated_at" in dict(e.query) for e in exchanges)
    assert problems_in(spec, exchanges, MX_EXTENSIONS) == ""


async def test_a_new_plaid_item_is_not_ready_then_serves_its_last_30_days_then_its_history(
    http: aiohttp.ClientSession, sandbox: str
) -> None:
    spec = load_spec("plaid")  # checks the bodies too where the spec is here
    plaid = PlaidAdapter(http, base_url=f"{sandbox}/plaid", client_id="c", secret="plaid-s3")
    token = await plaid.create_link(LinkRequest(user_ref=PERSON), timeout_s=5.0)
    done = await admin(http, f"{sandbox}/_admin/links/plaid/complete", {"link_token": token.token})
    link = await plaid.exchange_token(done["public_token"], timeout_s=5.0)

    async def sync(cursor: str) -> dict[str, Any]:
        body = {"client_id": "c", "secret": "s", "access_token": link.access_token}
        async with http.post(
            f"{sandbox}/plaid/transactions/sync", json={**body, "cursor": cursor, "count": 500}
        ) as response:
            answer: dict[str, Any] = await response.json()
        if spec is not None:
            schema = {"$ref": "#/components/schemas/TransactionsSyncResponse"}
            assert spec.schema_errors(schema, answer) == []
        return answer

    not_ready = await sync("")
    initial = await sync("")
    historical = await sync(initial["next_cursor"])
    caught_up = await sync(historical["next_cursor"])

    assert not_ready["transactions_update_status"] == "NOT_READY"
    assert (not_ready["added"], not_ready["next_cursor"], not_ready["has_more"]) == ([], "", False)
    assert initial["transactions_update_status"] == "INITIAL_UPDATE_COMPLETE"
    assert historical["transactions_update_status"] == "HISTORICAL_UPDATE_COMPLETE"
    recent = {t["date"] for t in initial["added"]}
    older = {t["date"] for t in historical["added"]}
    assert initial["added"] and historical["added"] and not initial["has_more"]
    assert min(recent) >= "2025-01-02" > max(older)
    assert caught_up["added"] == [] and caught_up["transactions_update_status"] == (
        "HISTORICAL_UPDATE_COMPLETE"
    )


async def test_the_plaid_adapter_reads_not_ready_as_come_back_later_and_gets_it_all_by_paging(
    http: aiohttp.ClientSession, sandbox: str
) -> None:
    plaid = PlaidAdapter(http, base_url=f"{sandbox}/plaid", client_id="c", secret="plaid-s3")
    token = await plaid.create_link(LinkRequest(user_ref=PERSON), timeout_s=5.0)
    done = await admin(http, f"{sandbox}/_admin/links/plaid/complete", {"link_token": token.token})
    link = await plaid.exchange_token(done["public_token"], timeout_s=5.0)

    first = await plaid.sync_transactions(link, cursor=None, count=500, timeout_s=5.0)
    recent = await plaid.sync_transactions(link, cursor=first.next_cursor, count=500, timeout_s=5)
    rest = await plaid.sync_transactions(link, cursor=recent.next_cursor, count=500, timeout_s=5)

    assert (first.added, first.modified, first.removed) == ([], [], [])
    assert first.has_more and first.next_cursor == ""
    assert recent.added and not recent.has_more
    assert rest.added and not rest.has_more
    assert min(t["date"] for t in recent.added) > max(t["date"] for t in rest.added)

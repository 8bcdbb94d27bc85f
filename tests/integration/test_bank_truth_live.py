"""One bank behind every provider, over real HTTP: each feed folds back to the bank's truth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from services.providers.base import (
    TRANSACTION_KEYS,
    LinkCredentials,
    LinkRequest,
    ProviderAdapter,
    TransactionsPage,
)
from services.providers.belvo.adapter import BelvoAdapter
from services.providers.finicity.adapter import FinicityAdapter
from services.providers.mx.adapter import MxAdapter
from services.providers.plaid.adapter import PlaidAdapter

pytestmark = pytest.mark.integration

PERSON = "ana"
PLAID_LINK = LinkCredentials(
    provider="plaid", item_id="item-ana", access_token=f"access-sandbox-{PERSON}"
)
MX_LINK = LinkCredentials(provider="mx", item_id=f"MBR-{PERSON}", access_token=f"USR-{PERSON}")
# The sandbox's history ends on 2025-01-31; Finicity's and Belvo's "now" is the day after.
NOW = datetime(2025, 2, 1, tzinfo=UTC).timestamp()

Truth = dict[str, Any]


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def plaid(sandbox: str, http: aiohttp.ClientSession) -> PlaidAdapter:
    return PlaidAdapter(http, base_url=f"{sandbox}/plaid", client_id="c", secret="plaid-s3cret")


@pytest.fixture
def mx(sandbox: str, http: aiohttp.ClientSession) -> MxAdapter:
    return MxAdapter(http, base_url=f"{sandbox}/mx", client_id="c", api_key="mx-k3y")


async def truth(
    http: aiohttp.ClientSession, sandbox: str, person: str = PERSON, **query: str
) -> Truth:
    async with http.get(f"{sandbox}/_admin/truth/{person}", params=query) as response:
        assert response.status == 200, await response.text()
        body: Truth = await response.json()
        return body


async def advance(
    http: aiohttp.ClientSession, sandbox: str, person: str = PERSON, **body: Any
) -> list[dict[str, Any]]:
    async with http.post(f"{sandbox}/_admin/truth/{person}/advance", json=body) as response:
        assert response.status == 200, await response.text()
        events: list[dict[str, Any]] = (await response.json())["events"]
        return events


async def sync_to_the_end(
    adapter: ProviderAdapter, link: LinkCredentials, cursor: str | None = None, count: int = 7
) -> list[TransactionsPage]:
    pages: list[TransactionsPage] = []
    while not pages or pages[-1].has_more:
        page = await adapter.sync_transactions(link, cursor=cursor, count=count, timeout_s=5.0)
        pages.append(page)
        cursor = page.next_cursor
    return pages


Folded = dict[str, dict[str, Any]]


def fold(pages: list[TransactionsPage], into: Folded | None = None) -> Folded:
    """A feed folded as syncyard must: upsert added/modified, drop removed, and drop the
    pending transaction a posted one replaces (Plaid's `pending_transaction_id`)."""
    folded = dict(into or {})
    for page in pages:
        for t in [*page.added, *page.modified]:
            assert set(t) == TRANSACTION_KEYS
            if t["pending_transaction_id"]:
                folded.pop(t["pending_transaction_id"], None)
            folded[t["transaction_id"]] = t
        for gone in page.removed:
            folded.pop(gone, None)
    return folded


def live(bank: Truth) -> list[dict[str, Any]]:
    return [t for t in bank["transactions"] if not t["withdrawn"]]


def assert_folds_to_the_truth(
    folded: dict[str, dict[str, Any]], bank: Truth, provider: str
) -> None:
    """Every live bank transaction once, under the provider's id, as the provider shows it."""
    expected = {t["providers"][provider]["transaction_id"]: t for t in live(bank)}
    accounts = {a["providers"][provider]: a["id"] for a in bank["accounts"]}
    assert folded.keys() == expected.keys()
    for provider_id, t in folded.items():
        real = expected[provider_id]
        assert accounts[t["account_id"]] == real["account_id"]
        assert (t["amount"], t["pending"]) == (real["amount"], real["pending"])
        assert t["date"] == real["provider_dates"][provider]
        assert t["iso_currency_code"] == bank["currency"]


async def test_paging_plaid_to_the_end_folds_to_the_bank_s_live_transactions(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    folded = fold(await sync_to_the_end(plaid, PLAID_LINK))

    bank = await truth(http, sandbox)
    assert_folds_to_the_truth(folded, bank, "plaid")
    by_id = {t["providers"]["plaid"]["transaction_id"]: t for t in live(bank)}
    for plaid_id, t in folded.items():
        real = by_id[plaid_id]
        assert t["pending_transaction_id"] == real["providers"]["plaid"]["pending_transaction_id"]
        assert (t["authorized_date"], t["merchant_name"]) == (
            real["authorized_date"],
            real["merchant"],
        )
        assert t["name"] == real["counterparty"]


async def test_paging_mx_to_the_end_folds_to_the_same_bank_s_live_transactions(
    mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    folded = fold(await sync_to_the_end(mx, MX_LINK, count=10))

    bank = await truth(http, sandbox)
    assert_folds_to_the_truth(folded, bank, "mx")
    by_id = {t["providers"]["mx"]["transaction_id"]: t for t in live(bank)}
    assert all(t["name"] == by_id[i]["description"] for i, t in folded.items())


async def test_plaid_and_mx_show_one_person_the_same_purchases_under_unrelated_ids(
    plaid: PlaidAdapter, mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    at_plaid = fold(await sync_to_the_end(plaid, PLAID_LINK))
    at_mx = fold(await sync_to_the_end(mx, MX_LINK, count=25))

    bank = await truth(http, sandbox)
    to_bank = {
        t["providers"][p]["transaction_id"]: t["id"] for t in live(bank) for p in ("plaid", "mx")
    }
    assert not at_plaid.keys() & at_mx.keys()
    assert sorted(to_bank[i] for i in at_plaid) == sorted(to_bank[i] for i in at_mx)
    amounts = {to_bank[i]: t["amount"] for i, t in at_plaid.items()}
    assert all(amounts[to_bank[i]] == t["amount"] for i, t in at_mx.items())


def expected_plaid_changes(events: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """What Plaid must report for the bank's events, in their order."""
    added: list[str] = []
    modified: list[str] = []
    removed: list[str] = []
    for event in events:
        ids = event["transaction"]["providers"]["plaid"]
        if event["kind"] in ("authorized", "posted"):
            added.append(ids["transaction_id"])
        elif event["kind"] == "settled":
            removed.append(ids["pending_transaction_id"])
            added.append(ids["transaction_id"])
        elif event["kind"] == "withdrawn":
            removed.append(ids["transaction_id"])
        else:
            modified.append(ids["transaction_id"])
    return added, modified, removed


async def test_after_the_bank_moves_on_plaid_s_stored_cursor_brings_exactly_the_new_changes(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    first = await sync_to_the_end(plaid, PLAID_LINK)
    events = await advance(http, sandbox, days=12)

    later = await sync_to_the_end(plaid, PLAID_LINK, cursor=first[-1].next_cursor)

    added, modified, removed = expected_plaid_changes(events)
    assert [t["transaction_id"] for p in later for t in p.added] == added
    assert [t["transaction_id"] for p in later for t in p.modified] == modified
    assert [r for p in later for r in p.removed] == removed
    assert any(t["pending_transaction_id"] for p in later for t in p.added)
    assert_folds_to_the_truth(fold(later, fold(first)), await truth(http, sandbox), "plaid")


async def plaid_balances(http: aiohttp.ClientSession, sandbox: str, route: str) -> Folded:
    body = {"client_id": "c", "secret": "s", "access_token": PLAID_LINK.access_token}
    async with http.post(f"{sandbox}/plaid{route}", json=body) as response:
        assert response.status == 200, await response.text()
        accounts: list[dict[str, Any]] = (await response.json())["accounts"]
    return {a["account_id"]: a["balances"] for a in accounts}


def bank_balances(bank: Truth) -> Folded:
    return {
        a["providers"]["plaid"]: {"current": a["current"], "available": a["available"]}
        for a in bank["accounts"]
    }


async def test_after_the_bank_moves_on_plaid_s_accounts_show_its_new_balances(
    http: aiohttp.ClientSession, sandbox: str
) -> None:
    """The sandbox keeps each state of the bank's Plaid answers encoded: a change must show."""
    for route in ("/accounts/get", "/transactions/sync"):
        await plaid_balances(http, sandbox, route)
    before = bank_balances(await truth(http, sandbox))
    await advance(http, sandbox, days=12)
    after = bank_balances(await truth(http, sandbox))

    assert after != before
    for route in ("/accounts/get", "/transactions/sync"):
        shown = await plaid_balances(http, sandbox, route)
        assert {
            i: {"current": b["current"], "available": b["available"]} for i, b in shown.items()
        } == after


async def test_after_the_bank_moves_on_mx_s_accounts_show_its_new_balances(
    http: aiohttp.ClientSession, sandbox: str
) -> None:
    """The sandbox keeps MX's account rows per state of the bank: a change must show."""
    url = f"{sandbox}/mx/users/{MX_LINK.access_token}/members/{MX_LINK.item_id}/accounts"
    headers = {"Accept": "application/vnd.mx.api.v1+json", "Authorization": "Basic Yzpr"}

    async def shown() -> Folded:
        async with http.get(url, headers=headers) as response:
            assert response.status == 200, await response.text()
            rows: list[dict[str, Any]] = (await response.json())["accounts"]
        return {
            r["guid"]: {"current": r["balance"], "available": r["available_balance"]} for r in rows
        }

    def expected(bank: Truth) -> Folded:
        return {
            a["providers"]["mx"]: {"current": a["current"], "available": a["available"]}
            for a in bank["accounts"]
        }

    assert await shown() == expected(await truth(http, sandbox))
    await advance(http, sandbox, days=12)
    after = expected(await truth(http, sandbox))

    assert await shown() == after


async def test_after_the_bank_moves_on_mx_s_stored_cursor_brings_exactly_the_new_changes(
    mx: MxAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    first = await sync_to_the_end(mx, MX_LINK, count=10)
    seen = fold(first)
    events = await advance(http, sandbox, days=20)

    later = await sync_to_the_end(mx, MX_LINK, cursor=first[-1].next_cursor, count=10)

    final = {e["transaction"]["id"]: e["transaction"] for e in events}
    mx_id = {bank_id: t["providers"]["mx"]["transaction_id"] for bank_id, t in final.items()}
    gone = {mx_id[i] for i, t in final.items() if t["withdrawn"]}
    changed = {mx_id[i] for i, t in final.items() if not t["withdrawn"]}
    assert {r for p in later for r in p.removed} == gone != set()
    assert (
        {t["transaction_id"] for p in later for t in p.modified} == changed & seen.keys() != set()
    )
    assert {t["transaction_id"] for p in later for t in p.added} == changed - seen.keys()
    assert_folds_to_the_truth(fold(later, seen), await truth(http, sandbox), "mx")
    again = await sync_to_the_end(mx, MX_LINK, cursor=later[-1].next_cursor, count=10)
    assert [(p.added, p.modified, p.removed) for p in again] == [([], [], [])]


async def test_advancing_by_transactions_makes_that_many_happen_and_the_same_after_a_reset(
    http: aiohttp.ClientSession, sandbox: str
) -> None:
    first = await advance(http, sandbox, transactions=9)
    after = await truth(http, sandbox)
    async with http.post(f"{sandbox}/_admin/reset") as response:
        assert response.status == 200
    again = await advance(http, sandbox, transactions=4) + await advance(
        http, sandbox, transactions=5
    )

    assert len(first) == 9 and first == again
    assert after["events"] == after["history_events"] + 9
    assert after["now"] == first[-1]["at"]


@pytest.mark.parametrize(
    "body", [{}, {"days": 1, "transactions": 1}, {"days": 0}, {"transactions": -1}, {"weeks": 1}]
)
async def test_an_advance_that_says_not_how_far_is_refused(
    http: aiohttp.ClientSession, sandbox: str, body: dict[str, Any]
) -> None:
    async with http.post(f"{sandbox}/_admin/truth/{PERSON}/advance", json=body) as response:
        assert response.status == 400


async def test_a_plaid_link_flow_s_token_reads_the_bank_of_the_person_who_linked(
    plaid: PlaidAdapter, http: aiohttp.ClientSession, sandbox: str
) -> None:
    token = await plaid.create_link(LinkRequest(user_ref="space-1/ana"), timeout_s=2.0)
    async with http.post(
        f"{sandbox}/_admin/links/plaid/complete", json={"link_token": token.token}
    ) as response:
        public_token = (await response.json())["public_token"]
    link = await plaid.exchange_token(public_token, timeout_s=2.0)
    accounts = await plaid.get_accounts(link, timeout_s=2.0)

    # A new Item: not ready at first, then the last 30 days; the older history
    # lands after that, for the next sync to bring.
    first = await sync_to_the_end(plaid, link, count=50)
    folded = fold(await sync_to_the_end(plaid, link, first[-1].next_cursor, count=50), fold(first))

    institution = (
        await plaid.search_institutions("", country_codes=("US",), limit=1, timeout_s=2.0)
    )[0]
    bank = await truth(http, sandbox, "space-1/ana", institution=institution.institution_id)
    assert_folds_to_the_truth(folded, bank, "plaid")
    assert {a["account_id"] for a in accounts.accounts} == {
        a["providers"]["plaid"] for a in bank["accounts"]
    }


async def test_finicity_s_first_login_reads_its_customer_s_usual_bank(
    http: aiohttp.ClientSession, sandbox: str
) -> None:
    finicity = FinicityAdapter(
        http,
        base_url=f"{sandbox}/finicity",
        partner_id="2445583925753",
        partner_secret="partner-s3cret",
        app_key="app-k3y",
        clock=lambda: NOW,
    )
    link = await finicity.exchange_token("5011648377", timeout_s=2.0)

    folded = fold(await sync_to_the_end(finicity, link, count=50))

    assert_folds_to_the_truth(folded, await truth(http, sandbox, "5011648377"), "finicity")


async def test_a_belvo_link_reads_its_username_s_bank_at_its_institution(
    http: aiohttp.ClientSession, sandbox: str
) -> None:
    belvo = BelvoAdapter(
        http,
        base_url=f"{sandbox}/belvo",
        secret_id="belvo-id",
        secret_password="belvo-s3cret",
        clock=lambda: NOW,
    )
    found = await belvo.search_institutions("", country_codes=("MX",), limit=1, timeout_s=2.0)
    link = await belvo.register_link(found[0].institution_id, PERSON, "pw-1234", timeout_s=2.0)

    folded = fold(await sync_to_the_end(belvo, link, count=50))

    bank = await truth(http, sandbox, institution=found[0].name)
    assert bank["currency"] == "MXN"
    assert_folds_to_the_truth(folded, bank, "belvo")

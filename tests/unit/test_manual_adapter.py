"""Manual entry: a person's own ledger, paged by log position, never calling out."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from services.providers.base import (
    LinkCredentials,
    LinkRequest,
    ProviderCallError,
    WebhookRejectedError,
)
from services.providers.manual.adapter import ManualAdapter
from services.providers.manual.store import (
    InMemoryManualEntries,
    ManualAccount,
    ManualChange,
    ManualEntry,
)

pytestmark = pytest.mark.unit


def entry(n: int, amount: float = 10.0) -> ManualEntry:
    return ManualEntry(
        entry_id=f"e{n}", account_id="cash", amount=amount, date="2025-01-31", name=f"entry {n}"
    )


@pytest.fixture
def store() -> InMemoryManualEntries:
    return InMemoryManualEntries()


@pytest.fixture
def adapter(store: InMemoryManualEntries) -> ManualAdapter:
    ids = itertools.count(1)
    return ManualAdapter(store, new_id=lambda: f"ledger-{next(ids)}")


async def linked(adapter: ManualAdapter) -> LinkCredentials:
    token = await adapter.create_link(LinkRequest(user_ref="user-1"), timeout_s=1.0)
    return await adapter.exchange_token(token.token, timeout_s=1.0)


async def test_a_link_is_a_ledger_opened_in_the_store(
    adapter: ManualAdapter, store: InMemoryManualEntries
) -> None:
    link = await linked(adapter)

    assert link == LinkCredentials(provider="manual", item_id="ledger-1", access_token="ledger-1")
    assert await store.exists("ledger-1")


async def test_accounts_come_back_normalised(
    adapter: ManualAdapter, store: InMemoryManualEntries
) -> None:
    link = await linked(adapter)
    store.put_account(link.item_id, ManualAccount(account_id="cash", name="Wallet", current=42.5))

    page = await adapter.get_accounts(link, timeout_s=1.0)

    assert page.accounts == [
        {
            "account_id": "cash",
            "name": "Wallet",
            "type": "other",
            "subtype": None,
            "mask": None,
            "balances": {"current": 42.5, "available": None, "iso_currency_code": "USD"},
        }
    ]


async def test_cursors_page_through_adds_edits_and_deletes_to_the_end(
    adapter: ManualAdapter, store: InMemoryManualEntries
) -> None:
    link = await linked(adapter)
    for n in range(5):
        store.put_entry(link.item_id, entry(n))
    store.put_entry(link.item_id, entry(1, amount=12.0))
    store.delete_entry(link.item_id, "e2")

    first = await adapter.sync_transactions(link, cursor=None, count=4, timeout_s=1.0)
    second = await adapter.sync_transactions(link, cursor=first.next_cursor, count=4, timeout_s=1.0)
    after = await adapter.sync_transactions(link, cursor=second.next_cursor, count=4, timeout_s=1.0)

    assert [t["transaction_id"] for t in first.added] == ["e0", "e1", "e2", "e3"]
    assert first.has_more
    assert [t["transaction_id"] for t in second.added] == ["e4"]
    assert [(t["transaction_id"], t["amount"]) for t in second.modified] == [("e1", 12.0)]
    assert second.removed == ["e2"]
    assert not second.has_more
    assert (after.added, after.modified, after.removed, after.has_more) == ([], [], [], False)
    assert after.next_cursor == second.next_cursor == "7"


async def test_a_new_entry_after_a_finished_sync_is_the_next_pages_only_change(
    adapter: ManualAdapter, store: InMemoryManualEntries
) -> None:
    link = await linked(adapter)
    store.put_entry(link.item_id, entry(0))
    done = await adapter.sync_transactions(link, cursor=None, count=10, timeout_s=1.0)
    store.put_entry(link.item_id, entry(1))

    page = await adapter.sync_transactions(link, cursor=done.next_cursor, count=10, timeout_s=1.0)

    assert [t["transaction_id"] for t in page.added] == ["e1"]


@pytest.mark.parametrize("cursor", ["abc", "-1", "99"])
async def test_a_cursor_that_is_not_a_position_in_the_log_is_refused(
    adapter: ManualAdapter, cursor: str
) -> None:
    link = await linked(adapter)

    with pytest.raises(ProviderCallError) as caught:
        await adapter.sync_transactions(link, cursor=cursor, count=10, timeout_s=1.0)

    assert caught.value.error.code == "INVALID_CURSOR"
    assert caught.value.error.type == "validation"


async def test_a_removed_ledger_is_gone_and_removing_again_is_harmless(
    adapter: ManualAdapter,
) -> None:
    link = await linked(adapter)
    await adapter.remove_item(link, timeout_s=1.0)
    await adapter.remove_item(link, timeout_s=1.0)

    with pytest.raises(ProviderCallError) as caught:
        await adapter.get_accounts(link, timeout_s=1.0)

    assert caught.value.error.code == "ITEM_NOT_FOUND"
    assert not caught.value.error.retryable


async def test_an_unknown_public_token_does_not_exchange(adapter: ManualAdapter) -> None:
    with pytest.raises(ProviderCallError) as caught:
        await adapter.exchange_token("ledger-404", timeout_s=1.0)

    assert caught.value.error.code == "ITEM_NOT_FOUND"


async def test_a_store_slower_than_the_deadline_is_a_retryable_timeout(
    store: InMemoryManualEntries,
) -> None:
    class SlowStore(InMemoryManualEntries):
        async def changes(
            self, ledger_id: str, after: int, limit: int
        ) -> tuple[list[ManualChange], int]:
            await asyncio.sleep(1.0)
            return [], 0

    adapter = ManualAdapter(SlowStore())
    link = LinkCredentials(provider="manual", item_id="x", access_token="x")

    with pytest.raises(ProviderCallError) as caught:
        await adapter.sync_transactions(link, cursor=None, count=10, timeout_s=0.01)

    assert (caught.value.error.code, caught.value.error.retryable) == ("store_timeout", True)


async def test_institutions_webhooks_and_health_are_all_local(adapter: ManualAdapter) -> None:
    assert (await adapter.get_institution("manual", timeout_s=1.0)).name == "Manual entry"
    found = await adapter.search_institutions("man", country_codes=("US",), limit=5, timeout_s=1.0)
    assert [i.institution_id for i in found] == ["manual"]
    assert (
        await adapter.search_institutions("plaid", country_codes=(), limit=5, timeout_s=1.0) == []
    )
    assert (await adapter.health_check(timeout_s=1.0)).healthy
    with pytest.raises(WebhookRejectedError, match="no webhooks"):
        await adapter.handle_webhook({}, b"{}", now=0.0, timeout_s=1.0)
    with pytest.raises(ProviderCallError):
        await adapter.get_institution("plaid", timeout_s=1.0)

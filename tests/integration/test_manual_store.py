"""`PostgresManualEntries`: the manual provider's ledgers in PostgreSQL, read through the
manual adapter as a sync reads them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from infra.manual_entries import (
    LedgerFullError,
    LedgerLimits,
    LedgerOwnedElsewhereError,
    PostgresManualEntries,
)
from services.providers.base import LinkCredentials, ProviderCallError
from services.providers.manual.adapter import ManualAdapter
from services.providers.manual.store import ManualAccount, ManualEntry

pytestmark = pytest.mark.integration

LINK = LinkCredentials(provider="manual", item_id="ledger-1", access_token="ledger-1")
OWNER = "space-1/cash-1"


def entry(entry_id: str, amount: float) -> ManualEntry:
    return ManualEntry(entry_id=entry_id, account_id="wallet", amount=amount,
                       date="2026-11-03", name=f"entry {entry_id}")  # fmt: skip


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresManualEntries]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        entries = PostgresManualEntries(pool)
        await entries.setup()
        await entries.setup()  # a second replica's start changes nothing
        yield entries
    finally:
        await pool.close()


async def test_changes_are_numbered_and_a_resent_entry_records_nothing(
    store: PostgresManualEntries,
) -> None:
    first = await store.record(
        "ledger-1", OWNER, accounts=[ManualAccount(account_id="wallet", name="Cash")],
        entries=[entry("a", 1.0), entry("b", 2.0)],
    )  # fmt: skip
    again = await store.record("ledger-1", OWNER, entries=[entry("a", 1.0)])
    edited = await store.record(
        "ledger-1", OWNER, entries=[entry("a", 1.5)], deleted=["b", "never-there"]
    )
    back = await store.record("ledger-1", OWNER, entries=[entry("b", 2.0)])

    assert (first.head, first.changes) == (2, 2)
    assert (again.head, again.changes) == (2, 0)
    assert (edited.head, edited.changes) == (4, 2)
    assert (back.head, back.changes) == (5, 1)
    changes, head = await store.changes("ledger-1", 0, 100)
    assert head == 5
    assert [(c.position, c.kind, c.entry.entry_id) for c in changes] == [
        (1, "added", "a"),
        (2, "added", "b"),
        (3, "modified", "a"),
        (4, "removed", "b"),
        (5, "added", "b"),
    ]
    assert [a.name for a in await store.accounts("ledger-1")] == ["Cash"]


async def test_the_manual_adapter_pages_the_stored_log_and_a_closed_ledger_is_gone(
    store: PostgresManualEntries,
) -> None:
    await store.record("ledger-1", OWNER, entries=[entry(str(n), float(n)) for n in range(5)])
    adapter = ManualAdapter(store)

    page = await adapter.sync_transactions(LINK, cursor=None, count=3, timeout_s=2.0)
    rest = await adapter.sync_transactions(LINK, cursor=page.next_cursor, count=3, timeout_s=2.0)

    assert [t["transaction_id"] for t in page.added] == ["0", "1", "2"] and page.has_more
    assert [t["transaction_id"] for t in rest.added] == ["3", "4"] and not rest.has_more
    await adapter.remove_item(LINK, timeout_s=2.0)
    with pytest.raises(ProviderCallError) as gone:
        await adapter.sync_transactions(LINK, cursor=None, count=3, timeout_s=2.0)
    assert gone.value.error.code == "ITEM_NOT_FOUND"
    assert not gone.value.error.retryable


async def test_another_account_cannot_write_to_a_ledger(store: PostgresManualEntries) -> None:
    await store.open("ledger-1", OWNER)

    with pytest.raises(LedgerOwnedElsewhereError):
        await store.record("ledger-1", "space-1/someone-else", entries=[entry("x", 9.0)])
    assert (await store.changes("ledger-1", 0, 10)) == ([], 0)


async def held(store: PostgresManualEntries, ledger_id: str = "ledger-1") -> tuple[Any, ...]:
    """Everything the ledger holds: its log, its head and its accounts."""
    changes, head = await store.changes(ledger_id, 0, 1000)
    accounts = await store.accounts(ledger_id)
    return tuple(changes), head, tuple(accounts)


async def test_a_write_past_the_ledger_s_live_entries_is_refused_whole(
    store: PostgresManualEntries,
) -> None:
    store.limits = LedgerLimits(entries=3)
    await store.record("ledger-1", OWNER, entries=[entry("a", 1.0), entry("b", 2.0)])
    before = await held(store)

    with pytest.raises(LedgerFullError, match="would hold 4 entries, over its limit of 3"):
        await store.record(
            "ledger-1", OWNER, accounts=[ManualAccount(account_id="wallet", name="Cash")],
            entries=[entry("a", 1.5), entry("c", 3.0), entry("d", 4.0)],
        )  # fmt: skip

    assert await held(store) == before  # not the edit of "a", nor the account
    # Up to the limit, and an add paid for by a removal in the same write, go through.
    assert (await store.record("ledger-1", OWNER, entries=[entry("c", 3.0)])).changes == 1
    swapped = await store.record("ledger-1", OWNER, entries=[entry("d", 4.0)], deleted=["a"])
    assert (swapped.head, swapped.changes) == (5, 2)
    # Edits and removals of a full ledger are never refused for being full.
    assert (await store.record("ledger-1", OWNER, entries=[entry("b", 2.5)])).changes == 1


async def test_a_ledger_s_log_and_accounts_are_bounded_too(store: PostgresManualEntries) -> None:
    store.limits = LedgerLimits(accounts=2, changes=4)
    wallet, jar, tin = (ManualAccount(account_id=n, name=n) for n in ("wallet", "jar", "tin"))
    await store.record("ledger-1", OWNER, accounts=[wallet, jar], entries=[entry("a", 1.0)])
    for amount in (1.5, 2.0, 2.5):  # edits, each a change of the log
        await store.record("ledger-1", OWNER, entries=[entry("a", amount)])
    before = await held(store)

    with pytest.raises(LedgerFullError, match="would hold 5 changes, over its limit of 4"):
        await store.record("ledger-1", OWNER, deleted=["a"])
    with pytest.raises(LedgerFullError, match="would hold 3 accounts, over its limit of 2"):
        await store.record("ledger-1", OWNER, accounts=[tin])

    assert await held(store) == before
    # Sent again unchanged, an entry or an account records nothing: not refused.
    again = await store.record("ledger-1", OWNER, accounts=[jar], entries=[entry("a", 2.5)])
    assert (again.head, again.changes) == (4, 0)

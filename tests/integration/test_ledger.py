"""The transaction ledger on real PostgreSQL: a failover never doubles a purchase."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.reconciliation.ledger import TransactionLedger
from tests.unit.test_reconciliation import MX_PAGE, PLAID_PAGE

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[TransactionLedger]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        book = TransactionLedger(pool)
        await book.setup()
        yield book
    finally:
        await pool.close()


async def test_purchases_already_sent_through_plaid_are_held_back_when_mx_reports_them(
    ledger: TransactionLedger,
) -> None:
    connection = uuid.uuid4()
    plaid, moved = await ledger.reconcile(
        connection, "plaid", {"added": PLAID_PAGE, "modified": [], "removed": []}
    )
    assert moved == 0 and len(plaid["added"]) == 3
    first_ids = {t["syncyard_transaction_id"] for t in plaid["added"]}

    mx, moved = await ledger.reconcile(
        connection, "mx", {"added": MX_PAGE, "modified": [], "removed": []}
    )
    assert moved == 3
    assert {t["transaction_id"] for t in mx["reconciled"]} == {"m1", "m2", "m3"}
    assert {t["syncyard_transaction_id"] for t in mx["reconciled"]} == first_ids
    assert [t["transaction_id"] for t in mx["added"]] == ["m4"]  # a new purchase

    again, moved = await ledger.reconcile(
        connection, "mx", {"added": MX_PAGE, "modified": [], "removed": ["m4"]}
    )
    assert moved == 3 and again["reconciled"] == mx["reconciled"]
    assert again["removed_syncyard_ids"] == [mx["added"][0]["syncyard_transaction_id"]]


async def test_connections_never_share_purchases(ledger: TransactionLedger) -> None:
    await ledger.reconcile(uuid.uuid4(), "plaid", {"added": PLAID_PAGE})
    other, moved = await ledger.reconcile(uuid.uuid4(), "mx", {"added": MX_PAGE})
    assert moved == 0 and len(other["added"]) == 4

"""Every adapter's transactions come out with the same keys, meaning the same thing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from services.providers.base import TRANSACTION_KEYS
from services.providers.belvo.wire import TransactionsList
from services.providers.belvo.wire import normalise_transaction as belvo
from services.providers.bitso.wire import LedgerEntry, normalise_entry
from services.providers.blockchain.wire import Tx, normalise_tx
from services.providers.finicity.wire import TransactionsResponse as FinicityResponse
from services.providers.finicity.wire import normalise_transaction as finicity
from services.providers.manual.adapter import _transaction as manual
from services.providers.manual.store import ManualEntry
from services.providers.mx.wire import TransactionsResponse as MxResponse
from services.providers.mx.wire import normalise_transaction as mx
from services.providers.plaid.wire import SyncResponse
from services.providers.plaid.wire import transaction as plaid

pytestmark = pytest.mark.unit

# 2025-01-30 and 2025-02-01, noon UTC.
AUTHORISED, POSTED = 1_738_238_400, 1_738_411_200


def plaid_posted() -> dict[str, Any]:
    body = {
        "added": [
            {
                "transaction_id": "posted-1",
                "pending_transaction_id": "pending-1",
                "account_id": "acc-1",
                "amount": 5.75,
                "iso_currency_code": "USD",
                "date": "2025-02-01",
                "authorized_date": "2025-01-30",
                "name": "Blue Bottle Coffee",
                "merchant_name": "Blue Bottle Coffee",
                "pending": False,
            }
        ],
        "modified": [],
        "removed": [],
        "next_cursor": "c",
        "has_more": False,
    }
    return plaid(msgspec.convert(body, SyncResponse).added[0])


def mx_posted() -> dict[str, Any]:
    record = {
        "guid": "TRN-1",
        "account_guid": "ACT-1",
        "amount": 5.75,
        "type": "DEBIT",
        "status": "POSTED",
        "transacted_at": "2025-01-30T12:00:00Z",
        "posted_at": "2025-02-01T12:00:00Z",
        "description": "SQ *BLUE BOTTLE #12 OAKLAND CA",
        "currency_code": "USD",
    }
    parsed = msgspec.convert(
        {"transactions": [record], "pagination": {"current_page": 1, "total_pages": 1}},
        MxResponse,
    )
    return mx(parsed.transactions[0])


def finicity_posted() -> dict[str, Any]:
    record = {
        "id": 1,
        "accountId": 2,
        "amount": -5.75,
        "status": "active",
        "description": "SQ *BLUE BOTTLE #12 OAKLAND CA",
        "transactionDate": AUTHORISED,
        "postedDate": POSTED,
        "categorization": {"normalizedPayeeName": "Blue Bottle Coffee"},
    }
    parsed = msgspec.convert({"transactions": [record]}, FinicityResponse)
    return finicity(parsed.transactions[0], "USD")


def belvo_posted() -> dict[str, Any]:
    record = {
        "id": "b-1",
        "account": {"id": "acc-1"},
        "amount": 5.75,
        "type": "OUTFLOW",
        "status": "PROCESSED",
        "created_at": "2025-01-30T12:00:00Z",
        "value_date": "2025-01-30",
        "accounting_date": "2025-02-01",
        "description": "Blue Bottle #12 Oakland Ca",
        "merchant": {"name": "Blue Bottle Coffee"},
        "currency": "USD",
    }
    return belvo(msgspec.convert({"results": [record]}, TransactionsList).results[0])


def bitso_entry() -> dict[str, Any]:
    entry = {
        "eid": "e1",
        "operation": "funding",
        "created_at": "2025-02-01T12:00:00+00:00",
        "balance_updates": [{"currency": "mxn", "amount": "100"}],
    }
    return normalise_entry("key", msgspec.convert(entry, LedgerEntry))[0]


def chain_tx() -> dict[str, Any]:
    tx = {
        "txid": "a" * 64,
        "vin": [],
        "vout": [{"value": 1000, "scriptpubkey_address": "bc1qaddress"}],
        "status": {"confirmed": True, "block_time": POSTED},
    }
    return normalise_tx("bitcoin", "bc1qaddress", msgspec.convert(tx, Tx))


def manual_entry() -> dict[str, Any]:
    return manual(
        ManualEntry(entry_id="m1", account_id="a1", amount=5.75, date="2025-02-01", name="Café")
    )


@pytest.mark.parametrize(
    "normalised",
    [
        plaid_posted,
        mx_posted,
        finicity_posted,
        belvo_posted,
        bitso_entry,
        chain_tx,
        manual_entry,
    ],
)
def test_every_adapter_gives_transactions_the_same_keys(normalised: Any) -> None:
    assert set(normalised()) == TRANSACTION_KEYS


@pytest.mark.parametrize("normalised", [plaid_posted, mx_posted, finicity_posted, belvo_posted])
def test_a_posted_card_charge_is_dated_when_it_posted_and_keeps_its_authorised_date(
    normalised: Any,
) -> None:
    t = normalised()

    assert (t["date"], t["authorized_date"]) == ("2025-02-01", "2025-01-30")
    assert (t["amount"], t["pending"]) == (5.75, False)


def test_only_plaid_points_a_posting_back_at_the_pending_transaction_it_replaces() -> None:
    assert plaid_posted()["pending_transaction_id"] == "pending-1"
    for other in (mx_posted, finicity_posted, belvo_posted):
        assert other()["pending_transaction_id"] is None


def test_merchant_names_are_the_providers_clean_ones_or_none() -> None:
    assert [f()["merchant_name"] for f in (plaid_posted, finicity_posted, belvo_posted)] == [
        "Blue Bottle Coffee"
    ] * 3
    assert mx_posted()["merchant_name"] is None
    assert mx_posted()["name"] == "SQ *BLUE BOTTLE #12 OAKLAND CA"

"""Bitso's v3 response bodies and how they map onto our accounts and transactions.

Bitso returns decimals as strings to keep their precision; they are parsed
with `Decimal` and only then turned into the float our normalised shape uses.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

# Fiat currencies Bitso holds; everything else is a crypto asset.
FIAT_CURRENCIES = frozenset({"mxn", "ars", "brl", "cop", "usd"})
MAX_LEDGER_PAGE = 100  # Bitso's documented maximum `limit`


class Balance(msgspec.Struct, frozen=True):
    currency: str
    total: str
    available: str
    locked: str = "0"


class _Balances(msgspec.Struct, frozen=True):
    balances: list[Balance]


class BalanceResponse(msgspec.Struct, frozen=True):
    success: bool
    payload: _Balances


class BalanceUpdate(msgspec.Struct, frozen=True):
    currency: str
    amount: str


class LedgerEntry(msgspec.Struct, frozen=True):
    eid: str
    operation: str
    created_at: str
    balance_updates: list[BalanceUpdate]
    details: dict[str, Any] = {}


class LedgerResponse(msgspec.Struct, frozen=True):
    success: bool
    payload: list[LedgerEntry]


class _Book(msgspec.Struct, frozen=True):
    book: str


class BooksResponse(msgspec.Struct, frozen=True):
    success: bool
    payload: list[_Book]


def number(text: str) -> float:
    """A Bitso decimal string as a float; ValueError if it is not a finite number."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("not a decimal") from None
    if not value.is_finite():
        raise ValueError("not a finite decimal")
    return float(value)


def account_id(item_id: str, currency: str) -> str:
    """A stable account id per key and currency that does not reveal the key."""
    return hashlib.sha256(f"bitso:{item_id}:{currency}".encode()).hexdigest()[:24]


def normalise_balance(item_id: str, b: Balance) -> dict[str, Any]:
    fiat = b.currency.lower() in FIAT_CURRENCIES
    return {
        "account_id": account_id(item_id, b.currency.lower()),
        "name": f"Bitso {b.currency.upper()}",
        "type": "depository" if fiat else "investment",
        "subtype": "cash management" if fiat else "crypto exchange",
        "mask": None,
        "balances": {
            "current": number(b.total),
            "available": number(b.available),
            "iso_currency_code": b.currency.upper(),
        },
    }


def _name(entry: LedgerEntry) -> str:
    method = entry.details.get("method_name") or entry.details.get("method")
    label = entry.operation.replace("_", " ").capitalize()
    return f"{label} ({method})" if isinstance(method, str) and method else label


def normalise_entry(item_id: str, entry: LedgerEntry) -> list[dict[str, Any]]:
    """One transaction per balance update: a trade moves two currencies at once."""
    return [
        {
            "transaction_id": f"{entry.eid}:{u.currency.lower()}",
            "account_id": account_id(item_id, u.currency.lower()),
            # Our convention (Plaid's): money out is positive.
            "amount": -number(u.amount),
            "iso_currency_code": u.currency.upper(),
            "date": entry.created_at[:10],
            "authorized_date": None,
            "name": _name(entry),
            "merchant_name": None,
            # The ledger lists settled movements only.
            "pending": False,
            "pending_transaction_id": None,
        }
        for u in entry.balance_updates
    ]

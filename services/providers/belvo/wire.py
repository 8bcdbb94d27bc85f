"""Belvo's wire shapes (only the fields we read), normalised, and our page cursor.

Belvo pages lists with a `next` URL. Our cursor keeps only its *query
string*, never the URL: a cursor is data from outside, and following a host
it names would send our secret keys there. It also keeps the run's
watermark, the newest `created_at` seen, so the next run asks only for what
Belvo stored since.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import msgspec

from services.providers.base import Institution

MAX_PAGE_SIZE = 1000

# Belvo account categories in the vocabulary the rest of syncyard uses (Plaid's).
_CATEGORIES: dict[str, tuple[str, str | None]] = {
    "CHECKING_ACCOUNT": ("depository", "checking"),
    "SAVINGS_ACCOUNT": ("depository", "savings"),
    "CREDIT_CARD": ("credit", "credit card"),
    "LOAN_ACCOUNT": ("loan", None),
    "INVESTMENT_ACCOUNT": ("investment", None),
    "PENSION_FUND_ACCOUNT": ("investment", "pension"),
}


class _Balance(msgspec.Struct, frozen=True):
    current: float | None = None
    available: float | None = None


class _Account(msgspec.Struct, frozen=True):
    id: str
    name: str | None = None
    category: str | None = None
    number: str | None = None
    currency: str | None = None
    balance: _Balance | None = None


class AccountsList(msgspec.Struct, frozen=True):
    results: list[_Account]
    next: str | None = None


class _TransactionAccount(msgspec.Struct, frozen=True):
    id: str


class _Merchant(msgspec.Struct, frozen=True):
    name: str | None = None


class _Transaction(msgspec.Struct, frozen=True):
    id: str
    account: _TransactionAccount
    amount: float
    created_at: str
    value_date: str | None = None
    accounting_date: str | None = None
    description: str | None = None
    merchant: _Merchant | None = None
    currency: str | None = None
    type: str | None = None
    status: str | None = None


class TransactionsList(msgspec.Struct, frozen=True):
    results: list[_Transaction]
    next: str | None = None


class Link(msgspec.Struct, frozen=True):
    id: str
    status: str
    institution: str | None = None
    # Our `user_ref`, as the widget (or `register`) gave it: whose link this is.
    external_id: str | None = None


class WidgetToken(msgspec.Struct, frozen=True):
    access: str


class BelvoInstitution(msgspec.Struct, frozen=True):
    id: int
    name: str
    display_name: str | None = None
    country_code: str | None = None
    country_codes: list[str] | None = None
    website: str | None = None
    resources: list[str] | None = None


class InstitutionsList(msgspec.Struct, frozen=True):
    results: list[BelvoInstitution]
    next: str | None = None


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """`query` is the next page's query string ("" starts a run after `watermark`)."""

    query: str
    watermark: str

    @property
    def starts_run(self) -> bool:
        return not self.query


def encode_cursor(cursor: Cursor) -> str:
    return "bv1." + base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode()


def decode_cursor(cursor: str | None) -> Cursor:
    if not cursor:
        return Cursor("", "")
    if not cursor.startswith("bv1."):
        raise ValueError("not a Belvo cursor")
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(cursor[4:].encode()), type=Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValueError("not a Belvo cursor") from None


def later(a: str, b: str) -> str:
    """The later of two ISO-8601 timestamps ("" is earliest); unparseable loses."""

    def key(value: str) -> datetime | None:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None

    ka, kb = key(a), key(b)
    if kb is None or (ka is not None and ka >= kb):
        return a
    return b


def normalise_account(a: _Account) -> dict[str, Any]:
    type_, subtype = _CATEGORIES.get((a.category or "").upper(), ("other", None))
    return {
        "account_id": a.id,
        "name": a.name or "",
        "type": type_,
        "subtype": subtype,
        "mask": a.number[-4:] if a.number else None,
        "balances": {
            "current": a.balance.current if a.balance else None,
            "available": a.balance.available if a.balance else None,
            "iso_currency_code": a.currency,
        },
    }


def normalise_transaction(t: _Transaction) -> dict[str, Any]:
    # Belvo amounts are unsigned with INFLOW/OUTFLOW; syncyard speaks Plaid's
    # sign (money out is positive).
    amount = -abs(t.amount) if (t.type or "").upper() == "INFLOW" else abs(t.amount)
    pending = (t.status or "").upper() == "PENDING"
    merchant = t.merchant.name if t.merchant else None
    # Belvo's value_date is when it happened, accounting_date when it posted.
    posted = None if pending else t.accounting_date
    return {
        "transaction_id": t.id,
        "account_id": t.account.id,
        "amount": amount,
        "iso_currency_code": t.currency,
        "date": posted or t.value_date or t.accounting_date or t.created_at[:10],
        "authorized_date": t.value_date,
        "name": t.description or merchant or "",
        "merchant_name": merchant or None,
        "pending": pending,
        # Belvo keeps one id from pending to processed: nothing is replaced.
        "pending_transaction_id": None,
    }


def normalise_institution(i: BelvoInstitution) -> Institution:
    countries = i.country_codes or ([i.country_code] if i.country_code else [])
    return Institution(
        institution_id=i.name,
        name=i.display_name or i.name,
        country_codes=tuple(c.upper() for c in countries),
        products=tuple(r.lower() for r in i.resources or ()),
        url=i.website,
    )

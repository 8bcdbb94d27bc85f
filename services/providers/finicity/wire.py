"""Finicity's wire shapes (only the fields we read), normalised, and the cursor it lacks.

Finicity has no change feed: transactions are read by date window and paged
by a 1-based record index (`start`, `limit` up to 1000, `moreAvailable`).
Our opaque cursor carries one run's window, its position and the link's
account ids, so every page of a run reads the same window.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import msgspec

from services.providers.base import Institution

MAX_LIMIT = 1000
# Banks restate transactions up to 15 days back (Finicity's own advice), so a
# new run re-reads that far; ids make the re-read harmless to the caller.
LOOKBACK_S = 15 * 86400
# A first run asks for "everything Finicity holds": it keeps at most 24 months.
FIRST_RUN_HISTORY_S = 3 * 365 * 86400

# Finicity account types in the vocabulary the rest of syncyard uses (Plaid's).
_ACCOUNT_TYPES: dict[str, tuple[str, str | None]] = {
    "checking": ("depository", "checking"),
    "savings": ("depository", "savings"),
    "cd": ("depository", "cd"),
    "moneyMarket": ("depository", "money market"),
    "creditCard": ("credit", "credit card"),
    "lineOfCredit": ("credit", "line of credit"),
    "investment": ("investment", None),
    "brokerageAccount": ("investment", "brokerage"),
    "mortgage": ("loan", "mortgage"),
    "loan": ("loan", None),
    "studentLoan": ("loan", "student"),
    "autoLoan": ("loan", "auto"),
}


class _AccountDetail(msgspec.Struct, frozen=True, rename="camel"):
    available_balance_amount: float | None = None


class FinicityAccount(msgspec.Struct, frozen=True, rename="camel"):
    id: int | str
    name: str | None = None
    type: str | None = None
    balance: float | None = None
    currency: str | None = None
    account_number_display: str | None = None
    institution_login_id: int | str | None = None
    aggregation_status_code: int | None = None
    created_date: int | None = None
    detail: _AccountDetail | None = None


class AccountsResponse(msgspec.Struct, frozen=True):
    accounts: list[FinicityAccount]


class _Categorization(msgspec.Struct, frozen=True, rename="camel"):
    normalized_payee_name: str | None = None


class _Transaction(msgspec.Struct, frozen=True, rename="camel"):
    id: int | str
    account_id: int | str
    amount: float
    status: str | None = None
    description: str | None = None
    memo: str | None = None
    posted_date: int | None = None
    transaction_date: int | None = None
    categorization: _Categorization | None = None


class TransactionsResponse(msgspec.Struct, frozen=True, rename="camel"):
    transactions: list[_Transaction]
    more_available: bool | str = False


class _Address(msgspec.Struct, frozen=True):
    country: str | None = None


class FinicityInstitution(msgspec.Struct, frozen=True, rename="camel"):
    id: int | str
    name: str
    url_home_app: str | None = None
    trans_agg: bool = True
    address: _Address | None = None


class InstitutionsResponse(msgspec.Struct, frozen=True):
    institutions: list[FinicityInstitution]


class InstitutionResponse(msgspec.Struct, frozen=True):
    institution: FinicityInstitution


class TokenResponse(msgspec.Struct, frozen=True):
    token: str


class CustomerResponse(msgspec.Struct, frozen=True):
    id: int | str


class CustomersResponse(msgspec.Struct, frozen=True):
    customers: list[CustomerResponse]


class ConnectResponse(msgspec.Struct, frozen=True):
    link: str


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """One run's window (epoch seconds), 1-based `start`, and the link's accounts.

    `accounts` pairs each account id of the link's login with its currency:
    the transactions endpoint lists every login of the customer and names
    no currency.
    """

    from_date: int
    to_date: int
    start: int
    accounts: tuple[tuple[str, str], ...] = ()

    @property
    def starts_run(self) -> bool:
        return self.start == 0


def encode_cursor(cursor: Cursor) -> str:
    return "fc1." + base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode()


def decode_cursor(cursor: str | None, *, now: int) -> Cursor:
    """None starts a first run; `start == 0` marks a run not yet begun."""
    if not cursor:
        return Cursor(now - FIRST_RUN_HISTORY_S, now, 0)
    if not cursor.startswith("fc1."):
        raise ValueError("not a Finicity cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor[4:].encode())
        parsed = msgspec.json.decode(raw, type=Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValueError("not a Finicity cursor") from None
    if parsed.start < 0 or parsed.from_date > parsed.to_date:
        raise ValueError("not a Finicity cursor")
    return parsed


def more_available(value: bool | str) -> bool:
    # Finicity's schema types it as a string ("true"); some answers send a bool.
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def normalise_account(a: FinicityAccount) -> dict[str, Any]:
    type_, subtype = _ACCOUNT_TYPES.get(a.type or "", ("other", None))
    return {
        "account_id": str(a.id),
        "name": a.name or "",
        "type": type_,
        "subtype": subtype,
        "mask": a.account_number_display[-4:] if a.account_number_display else None,
        "balances": {
            "current": a.balance,
            "available": a.detail.available_balance_amount if a.detail else None,
            "iso_currency_code": a.currency,
        },
    }


def _day(epoch: int | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).date().isoformat() if epoch else None


def normalise_transaction(t: _Transaction, currency: str | None) -> dict[str, Any]:
    pending = (t.status or "").lower() == "pending"
    authorized = _day(t.transaction_date)
    # A pending transaction's postedDate is only a placeholder at Finicity.
    posted = None if pending else _day(t.posted_date)
    payee = t.categorization.normalized_payee_name if t.categorization else None
    return {
        "transaction_id": str(t.id),
        "account_id": str(t.account_id),
        # Finicity signs money out negative; syncyard speaks Plaid's sign.
        "amount": -t.amount,
        "iso_currency_code": currency,
        "date": posted or authorized or _day(t.posted_date) or "1970-01-01",
        "authorized_date": authorized,
        "name": t.description or t.memo or "",
        "merchant_name": payee or None,
        "pending": pending,
        # Finicity keeps one id from pending to posted: nothing is replaced.
        "pending_transaction_id": None,
    }


def normalise_institution(i: FinicityInstitution) -> Institution:
    country = i.address.country if i.address and i.address.country else "US"
    return Institution(
        institution_id=str(i.id),
        name=i.name,
        country_codes=(country.upper(),),
        products=("transactions",) if i.trans_agg else (),
        url=i.url_home_app,
    )

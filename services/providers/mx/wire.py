"""MX's wire shapes, normalised to syncyard's, and the page cursor MX lacks.

MX pages by number, not by cursor; our opaque cursor carries the page number.
"""

from __future__ import annotations

from typing import Any

import msgspec

MX_ACCEPT = "application/vnd.mx.api.v1+json"
MAX_RECORDS_PER_PAGE = 1000
MEMBER_PATH = "/users/{user_guid}/members/{member_guid}"

# MX account types in the vocabulary the rest of syncyard uses (Plaid's).
_ACCOUNT_TYPES: dict[str, tuple[str, str | None]] = {
    "CHECKING": ("depository", "checking"),
    "SAVINGS": ("depository", "savings"),
    "MONEY_MARKET": ("depository", "money market"),
    "CERTIFICATE": ("depository", "cd"),
    "CREDIT_CARD": ("credit", "credit card"),
    "LINE_OF_CREDIT": ("credit", "line of credit"),
    "LOAN": ("loan", None),
    "MORTGAGE": ("loan", "mortgage"),
    "INVESTMENT": ("investment", None),
}


class _Pagination(msgspec.Struct, frozen=True):
    current_page: int
    total_pages: int


class _Account(msgspec.Struct, frozen=True):
    guid: str
    name: str | None = None
    type: str | None = None
    subtype: str | None = None
    account_number: str | None = None
    balance: float | None = None
    available_balance: float | None = None
    currency_code: str | None = None


class AccountsResponse(msgspec.Struct, frozen=True):
    accounts: list[_Account]
    pagination: _Pagination


class _Transaction(msgspec.Struct, frozen=True):
    guid: str
    account_guid: str
    amount: float
    date: str
    description: str | None = None
    status: str | None = None
    type: str | None = None
    currency_code: str | None = None


class TransactionsResponse(msgspec.Struct, frozen=True):
    transactions: list[_Transaction]
    pagination: _Pagination


class _Member(msgspec.Struct, frozen=True):
    connection_status: str


class MemberStatusResponse(msgspec.Struct, frozen=True):
    member: _Member


class Cursor(msgspec.Struct, frozen=True):
    """Where a sync resumes: a record offset, and whether a new sync run starts there.

    An offset rather than a page number, so a caller changing its page size
    re-reads a few records instead of skipping some.
    """

    offset: int
    starts_run: bool

    def page(self, per_page: int) -> int:
        return self.offset // per_page + 1


def encode_cursor(cursor: Cursor) -> str:
    return f"mx1.{cursor.offset}.{'run' if cursor.starts_run else 'more'}"


def decode_cursor(cursor: str | None) -> Cursor:
    """A missing cursor starts a first run at the first record."""
    if not cursor:
        return Cursor(0, starts_run=True)
    version, _, rest = cursor.partition(".")
    offset, _, kind = rest.partition(".")
    if version != "mx1" or not offset.isdigit() or kind not in {"run", "more"}:
        raise ValueError("not an MX cursor")
    return Cursor(int(offset), starts_run=kind == "run")


def normalise_account(a: _Account) -> dict[str, Any]:
    type_, subtype = _ACCOUNT_TYPES.get((a.type or "").upper(), ("other", None))
    return {
        "account_id": a.guid,
        "name": a.name or "",
        "type": type_,
        "subtype": a.subtype.lower() if a.subtype else subtype,
        "mask": a.account_number[-4:] if a.account_number else None,
        "balances": {
            "current": a.balance,
            "available": a.available_balance,
            "iso_currency_code": a.currency_code,
        },
    }


def normalise_transaction(t: _Transaction) -> dict[str, Any]:
    # MX amounts are unsigned with a DEBIT/CREDIT type; Plaid's sign (money out
    # is positive) is the one syncyard speaks.
    amount = -t.amount if (t.type or "").upper() == "CREDIT" else t.amount
    return {
        "transaction_id": t.guid,
        "account_id": t.account_guid,
        "amount": amount,
        "date": t.date,
        "name": t.description or "",
        "pending": (t.status or "").upper() == "PENDING",
        "iso_currency_code": t.currency_code,
    }

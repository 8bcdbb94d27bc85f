"""MX's wire shapes, normalised to syncyard's, and the change-feed cursor MX lacks.

MX pages by number, not by cursor, and has no change log: what it offers is
`from_updated_at`, a *date* filter on when a record last changed, deletions
included (marked `is_deleted`). Our cursor is a high-water mark: the newest
`updated_at` delivered and the guids delivered at that very instant. A run
lists `from_updated_at=<the mark's date>` page by page and drops what is not
newer than the mark (the date filter re-reads the mark's whole day); at the
end of the run the newest record seen becomes the next mark. A first run,
with no mark, lists the member's live transactions without the filter.

A known limit of paging by number: a record updated while a run is between
pages moves to the end of the `updated_at` order and shifts the records
behind it one place forward, so the run can miss one of them, and the next
run, starting after the moved record, misses it too. Runs take seconds and
MX aggregates a member a few times a day; a run without a cursor repairs it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import msgspec

MX_ACCEPT = "application/vnd.mx.api.v1+json"
# MX's `records_per_page` runs from 10 to 1000 (lists of users, accounts and
# transactions) or to 100 (institutions); above the top MX falls back to 25.
MIN_RECORDS_PER_PAGE = 10
MAX_INSTITUTIONS_PER_PAGE = 100
# We keep transaction pages small enough that one slow page does not eat a
# sync's deadline.
MIN_TRANSACTIONS_PER_PAGE = MIN_RECORDS_PER_PAGE
MAX_TRANSACTIONS_PER_PAGE = 100
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


class MxTransaction(msgspec.Struct, frozen=True):
    guid: str
    account_guid: str
    amount: float
    date: str | None = None
    transacted_at: str | None = None
    posted_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    description: str | None = None
    original_description: str | None = None
    status: str | None = None
    type: str | None = None
    currency_code: str | None = None
    is_deleted: bool = False


class TransactionsResponse(msgspec.Struct, frozen=True):
    transactions: list[MxTransaction]
    pagination: _Pagination


class _Member(msgspec.Struct, frozen=True):
    connection_status: str


class MemberStatusResponse(msgspec.Struct, frozen=True):
    member: _Member


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """Where a sync resumes.

    `mark` is the newest `updated_at` delivered before this run ("" before
    the first run) and `at_mark` the guids delivered at that instant; `page`
    is the run's next page (1 starts a run). `newest`/`at_newest` gather the
    run's own newest record, the next run's mark.
    """

    mark: str = ""
    at_mark: tuple[str, ...] = ()
    page: int = 1
    newest: str = ""
    at_newest: tuple[str, ...] = ()

    @property
    def starts_run(self) -> bool:
        return self.page == 1

    def delivered(self, t: MxTransaction) -> bool:
        """Whether an earlier run already reported this version of `t`."""
        if not self.mark:
            return False
        when, mark = instant(t.updated_at), instant(self.mark)
        if when is None or mark is None:
            return False
        return when < mark or (when == mark and t.guid in self.at_mark)

    def seen(self, t: MxTransaction) -> Cursor:
        """The run's newest record, moved on by `t` if `t` is newer."""
        when, newest = instant(t.updated_at), instant(self.newest)
        if when is None or t.updated_at is None:
            return self
        if newest is None or when > newest:
            return msgspec.structs.replace(self, newest=t.updated_at, at_newest=(t.guid,))
        if when == newest and t.guid not in self.at_newest:
            return msgspec.structs.replace(self, at_newest=(*self.at_newest, t.guid))
        return self

    def next_page(self) -> Cursor:
        return msgspec.structs.replace(self, page=self.page + 1)

    def next_run(self) -> Cursor:
        """The next run starts after this run's newest record (or where this one did)."""
        if not self.newest:
            return Cursor(self.mark, self.at_mark)
        return Cursor(self.newest, self.at_newest)


def instant(value: str | None) -> datetime | None:
    """An MX timestamp ("2025-01-31T12:00:00Z") as a datetime; None if it is not one."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def encode_cursor(cursor: Cursor) -> str:
    return "mx2." + base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode()


def _legacy(cursor: str) -> bool:
    """A page-offset cursor ("mx1.<offset>.<run|more>") from before the change feed."""
    version, _, rest = cursor.partition(".")
    offset, _, kind = rest.partition(".")
    return version == "mx1" and offset.isdigit() and kind in {"run", "more"}


def decode_cursor(cursor: str | None) -> Cursor:
    """A missing cursor starts a first run, which lists without a mark."""
    if not cursor:
        return Cursor()
    if _legacy(cursor):
        # Stored before the change feed: a first run re-lists, and ids make that harmless.
        return Cursor()
    if not cursor.startswith("mx2."):
        raise ValueError("not an MX cursor")
    try:
        parsed = msgspec.json.decode(base64.urlsafe_b64decode(cursor[4:].encode()), type=Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValueError("not an MX cursor") from None
    if parsed.page < 1 or (parsed.mark and instant(parsed.mark) is None):
        raise ValueError("not an MX cursor")
    return parsed


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


def _day(value: str | None) -> str | None:
    return value[:10] if value else None


def normalise_transaction(t: MxTransaction) -> dict[str, Any]:
    # MX amounts are unsigned with a DEBIT/CREDIT type; Plaid's sign (money out
    # is positive) is the one syncyard speaks.
    amount = -t.amount if (t.type or "").upper() == "CREDIT" else t.amount
    pending = (t.status or "").upper() == "PENDING"
    authorized = _day(t.transacted_at)
    posted = None if pending else _day(t.posted_at)
    return {
        "transaction_id": t.guid,
        "account_id": t.account_guid,
        "amount": amount,
        "iso_currency_code": t.currency_code,
        "date": posted or authorized or t.date or "",
        "authorized_date": authorized,
        "name": t.description or t.original_description or "",
        # MX names the merchant by guid only (a further call); the description stays raw.
        "merchant_name": None,
        "pending": pending,
        # MX keeps one guid from pending to posted: nothing is replaced.
        "pending_transaction_id": None,
    }

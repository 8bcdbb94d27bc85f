"""MX's records of a bank, and the bodies MX lists them with, made once per state of the bank.

A member's transactions are one record per bank transaction, whose guid stays
the same when a pending charge posts; every change after MX first aggregated
the bank touches the record's `updated_at`, and a withdrawn one stays, marked
deleted. The routes (`mx_api.py`) read these through `Bank.view`, so a listing
pays for the page it answers, not for the whole ledger (issue #13); the bodies
leave out the user and member guids, which come from the request.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sandbox.truth import Bank, BankTransaction, iso_date, iso_time
from sandbox.views import account_id, merchant_guid, mx_posted_at, transaction_id


class MxRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One transaction as MX stores it: its guid, when MX made and last changed it."""

    guid: str
    transaction: BankTransaction
    created_at: int
    updated_at: int
    deleted: bool


class MxListing(msgspec.Struct, frozen=True, kw_only=True):
    """The records in `updated_at` order (then by guid), the live ones, and each record's
    `updated_at` date, which `from_updated_at` / `to_updated_at` compare."""

    records: list[MxRecord]
    updated_on: list[str]
    live: list[MxRecord]


def mx_records(bank: Bank) -> list[MxRecord]:
    """MX's records of the bank, in `updated_at` order (then by guid)."""
    records = {
        t.id: MxRecord(
            guid=transaction_id("mx", bank, t.id),
            transaction=t,
            created_at=t.created_at,
            updated_at=t.updated_at,
            deleted=False,
        )
        for t in bank.at_history_end().values()
        if t.live
    }
    for event in bank.events[bank.history :]:
        t = event.transaction
        before = records.get(t.id)
        records[t.id] = MxRecord(
            guid=transaction_id("mx", bank, t.id),
            transaction=t,
            created_at=before.created_at if before else event.at,
            updated_at=event.at,
            deleted=not t.live,
        )
    return sorted(records.values(), key=lambda r: (r.updated_at, r.guid))


def mx_listing(bank: Bank) -> MxListing:
    records = mx_records(bank)
    return MxListing(
        records=records,
        updated_on=[iso_date(r.updated_at) for r in records],
        live=[r for r in records if not r.deleted],
    )


def transaction_bodies(bank: Bank) -> dict[str, dict[str, Any]]:
    """Each record's body by guid, but for `user_guid` and `member_guid`."""
    accounts = {a.id: account_id("mx", bank, a) for a in bank.accounts}
    return {r.guid: _transaction(bank, accounts, r) for r in bank.view("mx", mx_listing).records}


def _transaction(bank: Bank, accounts: dict[str, str], record: MxRecord) -> dict[str, Any]:
    t = record.transaction
    transacted = t.authorized_at if t.authorized_at is not None else t.created_at
    posted = mx_posted_at(t)
    return {
        "guid": record.guid,
        "account_guid": accounts[t.account_id],
        "amount": abs(t.amount),
        "type": "CREDIT" if t.amount < 0 else "DEBIT",
        "date": iso_date(transacted),
        "transacted_at": iso_time(transacted),
        "posted_at": iso_time(posted) if posted is not None else None,
        "status": "PENDING" if t.pending else "POSTED",
        "description": t.description,
        "original_description": t.description,
        "merchant_guid": merchant_guid(t.merchant) if t.merchant else None,
        "currency_code": bank.currency,
        "created_at": iso_time(record.created_at),
        "updated_at": iso_time(record.updated_at),
        "is_deleted": record.deleted,
    }


def account_bodies(bank: Bank) -> list[dict[str, Any]]:
    """The member's accounts with their balances now, but for `user_guid` and `member_guid`."""
    rows = []
    for a in bank.accounts:
        current, available = bank.balances(a)
        rows.append(
            {
                "guid": account_id("mx", bank, a),
                "name": a.name,
                "type": a.kind,
                "subtype": None,
                "account_number": "X" * 6 + a.number[-4:],
                "balance": current,
                "available_balance": available,
                "currency_code": bank.currency,
                "is_closed": False,
            }
        )
    return rows

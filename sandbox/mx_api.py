"""A local MX Platform API: a member's status, accounts and paged transactions.

A member's transactions are MX's view of its person's bank (`truth.py`):
one record per bank transaction, whose guid stays the same when a pending
charge posts (a modification, as at MX), with MX's own dates (`posted_at` a
day after the bank's) and the card network's raw descriptor as its
description. MX first aggregated the bank when its history ended; every
later change touches the record's `updated_at`, and a transaction the bank
withdraws stays in the list, marked `is_deleted`, for `from_updated_at`
readers to see (without that filter only live records are listed).
`from_updated_at` / `to_updated_at` take a date (YYYY-MM-DD), as MX's do;
records come in `updated_at` order, then by guid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

from sandbox.faults import Fault
from sandbox.json_answer import json_response
from sandbox.links import LINKS
from sandbox.middleware import TRUTH, fault_middleware
from sandbox.truth import Bank, BankTransaction, iso_date, iso_time
from sandbox.views import account_id, merchant_guid, mx_posted_at, transaction_id

MX_ACCEPT = "application/vnd.mx.api.v1+json"
# MX's documented range for `records_per_page`: 10 to 1000 (users, accounts,
# transactions) or 10 to 100 (institutions); above the top it falls back to its
# default of 25. Below 10 the sandbox refuses the call.
MIN_RECORDS_PER_PAGE = 10
MAX_RECORDS_PER_PAGE = 1000
DEFAULT_RECORDS_PER_PAGE = 25
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MEMBER = "/users/{user_guid}/members/{member_guid}"

# Member states a fault may put a member in. They show in the member's status,
# not as HTTP errors: MX keeps serving the last data it aggregated.
CONNECTION_STATUSES = frozenset(
    {
        "CHALLENGED", "CLOSED", "CONNECTED", "DEGRADED", "DELAYED", "DENIED", "DISABLED",
        "DISCONNECTED", "DISCONTINUED", "EXPIRED", "FAILED", "IMPAIRED", "IMPEDED",
        "LOCKED", "PENDING", "PREVENTED", "REJECTED", "RESUMED", "UPDATED",
    }
)  # fmt: skip


def error_response(status: int, message: str) -> web.Response:
    return json_response(
        {"error": {"message": message, "status": status}}, status=status, content_type=MX_ACCEPT
    )


def _is_member_state(fault: Fault) -> bool:
    return (fault.error_code or "").upper() in CONNECTION_STATUSES


def _accepts(fault: Fault, endpoint: str) -> bool:
    # A member state can only show in the status call, whatever the fault aimed at.
    return not _is_member_state(fault) or endpoint.endswith("/status")


def _fault_response(request: web.Request, fault: Fault) -> web.Response | None:
    if _is_member_state(fault):
        return _member_status(request, (fault.error_code or "").upper())
    if fault.status is None and fault.error_code is None:
        return None
    status = fault.status or 500
    return error_response(status, f"sandbox fault: {fault.error_code or status}")


def _member_status(request: web.Request, connection_status: str) -> web.Response:
    return json_response(
        {
            "member": {
                "guid": request.match_info["member_guid"],
                "connection_status": connection_status,
                "is_authenticated": connection_status == "CONNECTED",
                "is_being_aggregated": False,
                "aggregated_at": "2025-01-31T06:00:00Z",
                "successfully_aggregated_at": "2025-01-31T06:00:00Z",
            }
        },
        content_type=MX_ACCEPT,
    )


def check_headers(request: web.Request) -> web.Response | None:
    """MX's refusal of a call without its versioned Accept or Basic auth, else None."""
    if MX_ACCEPT not in request.headers.get("Accept", ""):
        return error_response(406, "The request didn't specify a valid API version.")
    if request.headers.get("Authorization", "").split(" ")[0] != "Basic":
        return error_response(401, "Invalid MX-API-Key or MX-Client-ID provided.")
    return None


class MxRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One transaction as MX stores it: its guid, when MX made and last changed it."""

    guid: str
    transaction: BankTransaction
    created_at: int
    updated_at: int
    deleted: bool


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


def _member(request: web.Request) -> Bank | web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    user, member = request.match_info["user_guid"], request.match_info["member_guid"]
    if not user.startswith("USR-"):
        return error_response(404, "User not found.")
    if not member.startswith("MBR-") or member in request.config_dict[LINKS].mx_removed:
        return error_response(404, "Member not found.")
    links = request.config_dict[LINKS]
    person, institution = links.mx_person(user), links.mx_institution(user, member)
    return request.config_dict[TRUTH].bank(person, institution)


def paged(
    request: web.Request,
    key: str,
    rows: Sequence[dict[str, Any]],
    *,
    max_per_page: int = MAX_RECORDS_PER_PAGE,
) -> web.Response:
    try:
        page = int(request.query.get("page", "1"))
        per_page = int(request.query.get("records_per_page", str(DEFAULT_RECORDS_PER_PAGE)))
    except ValueError:
        return error_response(400, "page and records_per_page must be integers.")
    if per_page > max_per_page:
        per_page = DEFAULT_RECORDS_PER_PAGE
    if page < 1 or per_page < MIN_RECORDS_PER_PAGE:
        return error_response(400, "page or records_per_page is out of range.")
    start = (page - 1) * per_page
    return json_response(
        {
            key: rows[start : start + per_page],
            "pagination": {
                "current_page": page,
                "per_page": per_page,
                "total_entries": len(rows),
                "total_pages": math.ceil(len(rows) / per_page),
            },
        },
        content_type=MX_ACCEPT,
    )


async def member_status(request: web.Request) -> web.Response:
    bank = _member(request)
    return bank if isinstance(bank, web.Response) else _member_status(request, "CONNECTED")


async def list_accounts(request: web.Request) -> web.Response:
    bank = _member(request)
    if isinstance(bank, web.Response):
        return bank
    rows = []
    for a in bank.accounts:
        current, available = bank.balances(a)
        rows.append(
            {
                "guid": account_id("mx", bank, a),
                "user_guid": request.match_info["user_guid"],
                "member_guid": request.match_info["member_guid"],
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
    return paged(request, "accounts", rows)


def _transaction(request: web.Request, bank: Bank, record: MxRecord) -> dict[str, Any]:
    t = record.transaction
    account = next(a for a in bank.accounts if a.id == t.account_id)
    transacted = t.authorized_at if t.authorized_at is not None else t.created_at
    posted = mx_posted_at(t)
    return {
        "guid": record.guid,
        "account_guid": account_id("mx", bank, account),
        "user_guid": request.match_info["user_guid"],
        "member_guid": request.match_info["member_guid"],
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


def _updated_window(request: web.Request) -> tuple[str, str] | web.Response:
    since = request.query.get("from_updated_at", "")
    until = request.query.get("to_updated_at", "")
    if any(value and not _DATE.match(value) for value in (since, until)):
        return error_response(400, "from_updated_at and to_updated_at must be YYYY-MM-DD.")
    return since, until


async def list_transactions(request: web.Request) -> web.Response:
    bank = _member(request)
    if isinstance(bank, web.Response):
        return bank
    window = _updated_window(request)
    if isinstance(window, web.Response):
        return window
    since, until = window
    records = bank.view("mx", mx_records)
    if since or until:
        # A change feed: what changed in the window, deletions included.
        chosen = [
            r
            for r in records
            if (not since or iso_date(r.updated_at) >= since)
            and (not until or iso_date(r.updated_at) <= until)
        ]
    else:
        chosen = [r for r in records if not r.deleted]
    rows = [_transaction(request, bank, r) for r in chosen]
    return paged(request, "transactions", rows)


def create_mx_app(prefix: str = "/mx") -> web.Application:
    """MX's routes, to be mounted under `prefix` on the sandbox app."""
    # Imported here: the link routes build on this module's checks and error bodies.
    from sandbox.mx_link_api import add_link_routes, mx_context  # noqa: PLC0415

    middleware = fault_middleware("mx", prefix, _fault_response, _accepts, mx_context)
    app = web.Application(middlewares=[middleware])
    app.router.add_get(_MEMBER + "/status", member_status)
    app.router.add_get(_MEMBER + "/accounts", list_accounts)
    app.router.add_get(_MEMBER + "/transactions", list_transactions)
    add_link_routes(app)
    return app

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

from aiohttp import web

from sandbox.faults import Fault
from sandbox.json_answer import json_response
from sandbox.links import LINKS
from sandbox.middleware import TRUTH, fault_middleware
from sandbox.mx_data import account_bodies, mx_listing, transaction_bodies
from sandbox.truth import Bank

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


def page_asked(
    request: web.Request, *, max_per_page: int = MAX_RECORDS_PER_PAGE
) -> tuple[int, int] | web.Response:
    """The (page, records_per_page) a listing asks for, or MX's refusal."""
    try:
        page = int(request.query.get("page", "1"))
        per_page = int(request.query.get("records_per_page", str(DEFAULT_RECORDS_PER_PAGE)))
    except ValueError:
        return error_response(400, "page and records_per_page must be integers.")
    if per_page > max_per_page:
        per_page = DEFAULT_RECORDS_PER_PAGE
    if page < 1 or per_page < MIN_RECORDS_PER_PAGE:
        return error_response(400, "page or records_per_page is out of range.")
    return page, per_page


def page_answer(
    key: str, rows: Sequence[dict[str, Any]], page: int, per_page: int, total: int
) -> web.Response:
    """One page of a listing of `total` records, `rows` being that page's."""
    return json_response(
        {
            key: rows,
            "pagination": {
                "current_page": page,
                "per_page": per_page,
                "total_entries": total,
                "total_pages": math.ceil(total / per_page),
            },
        },
        content_type=MX_ACCEPT,
    )


def paged(
    request: web.Request,
    key: str,
    rows: Sequence[dict[str, Any]],
    *,
    max_per_page: int = MAX_RECORDS_PER_PAGE,
) -> web.Response:
    asked = page_asked(request, max_per_page=max_per_page)
    if isinstance(asked, web.Response):
        return asked
    page, per_page = asked
    start = (page - 1) * per_page
    return page_answer(key, rows[start : start + per_page], page, per_page, len(rows))


def _owner(request: web.Request) -> dict[str, str]:
    """The user and member guids a member's records are listed under: the request's."""
    return {
        "user_guid": request.match_info["user_guid"],
        "member_guid": request.match_info["member_guid"],
    }


async def member_status(request: web.Request) -> web.Response:
    bank = _member(request)
    return bank if isinstance(bank, web.Response) else _member_status(request, "CONNECTED")


async def list_accounts(request: web.Request) -> web.Response:
    bank = _member(request)
    if isinstance(bank, web.Response):
        return bank
    owner = _owner(request)
    rows = [{**row, **owner} for row in bank.view("mx-accounts", account_bodies)]
    return paged(request, "accounts", rows)


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
    listing = bank.view("mx", mx_listing)
    if since or until:
        # A change feed: what changed in the window, deletions included.
        chosen = [
            r
            for r, on in zip(listing.records, listing.updated_on, strict=True)
            if (not since or on >= since) and (not until or on <= until)
        ]
    else:
        chosen = listing.live
    asked = page_asked(request)
    if isinstance(asked, web.Response):
        return asked
    page, per_page = asked
    start = (page - 1) * per_page
    # Only the page's bodies: the rest of the ledger is counted, not dressed.
    bodies, owner = bank.view("mx-bodies", transaction_bodies), _owner(request)
    rows = [{**bodies[r.guid], **owner} for r in chosen[start : start + per_page]]
    return page_answer("transactions", rows, page, per_page, len(chosen))


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

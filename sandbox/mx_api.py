"""A local MX Platform API: a member's status, accounts and paged transactions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from sandbox.data import FakeItem, FakeTransaction, fake_item
from sandbox.faults import Fault
from sandbox.links import LINKS
from sandbox.middleware import SEED, fault_middleware

MX_ACCEPT = "application/vnd.mx.api.v1+json"
MAX_RECORDS_PER_PAGE = 1000
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
    return web.json_response(
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
    return web.json_response(
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


def _member(request: web.Request) -> FakeItem | web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    user, member = request.match_info["user_guid"], request.match_info["member_guid"]
    if not user.startswith("USR-"):
        return error_response(404, "User not found.")
    if not member.startswith("MBR-") or member in request.config_dict[LINKS].mx_removed:
        return error_response(404, "Member not found.")
    return fake_item(request.config_dict[SEED], "mx", f"{user}/{member}", guids=True)


def paged(request: web.Request, key: str, rows: Sequence[dict[str, Any]]) -> web.Response:
    try:
        page = int(request.query.get("page", "1"))
        per_page = int(request.query.get("records_per_page", "25"))
    except ValueError:
        return error_response(400, "page and records_per_page must be integers.")
    if page < 1 or not 1 <= per_page <= MAX_RECORDS_PER_PAGE:
        return error_response(400, "page or records_per_page is out of range.")
    start = (page - 1) * per_page
    return web.json_response(
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
    item = _member(request)
    return item if isinstance(item, web.Response) else _member_status(request, "CONNECTED")


async def list_accounts(request: web.Request) -> web.Response:
    item = _member(request)
    if isinstance(item, web.Response):
        return item
    rows = [
        {
            "guid": a.id,
            "user_guid": request.match_info["user_guid"],
            "member_guid": request.match_info["member_guid"],
            "name": a.name,
            "type": a.kind,
            "subtype": None,
            "account_number": "X" * 6 + a.number[-4:],
            "balance": a.current,
            "available_balance": a.available,
            "currency_code": "USD",
            "is_closed": False,
        }
        for a in item.accounts
    ]
    return paged(request, "accounts", rows)


def _transaction(request: web.Request, t: FakeTransaction) -> dict[str, Any]:
    return {
        "guid": t.id,
        "account_guid": t.account_id,
        "user_guid": request.match_info["user_guid"],
        "member_guid": request.match_info["member_guid"],
        "amount": abs(t.amount),
        "type": "CREDIT" if t.amount < 0 else "DEBIT",
        "date": t.date,
        "transacted_at": f"{t.date}T12:00:00Z",
        "description": t.name,
        "status": "PENDING" if t.pending else "POSTED",
        "currency_code": "USD",
    }


async def list_transactions(request: web.Request) -> web.Response:
    item = _member(request)
    if isinstance(item, web.Response):
        return item
    rows = [_transaction(request, t) for t in item.current_transactions()]
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

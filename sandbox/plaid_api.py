"""A local Plaid: `/accounts/get` and `/transactions/sync` with real cursors and error bodies."""

from __future__ import annotations

import base64
import binascii
import itertools
from typing import Any

import msgspec
from aiohttp import web

from sandbox.data import FakeItem, FakeTransaction, fake_item
from sandbox.faults import Fault
from sandbox.links import LINKS
from sandbox.middleware import SEED, fault_middleware

# Plaid's documented sandbox token prefix, not a secret.
TOKEN_PREFIX = "access-sandbox-"  # noqa: S105

# error_code -> (error_type, HTTP status), as Plaid documents them.
PLAID_ERRORS: dict[str, tuple[str, int]] = {
    "INTERNAL_SERVER_ERROR": ("API_ERROR", 500),
    "PLANNED_MAINTENANCE": ("API_ERROR", 503),
    "INSTITUTION_DOWN": ("INSTITUTION_ERROR", 400),
    "INSTITUTION_NOT_RESPONDING": ("INSTITUTION_ERROR", 400),
    "INSTITUTION_NOT_AVAILABLE": ("INSTITUTION_ERROR", 400),
    "INSTITUTION_NO_LONGER_SUPPORTED": ("INSTITUTION_ERROR", 400),
    "ITEM_LOGIN_REQUIRED": ("ITEM_ERROR", 400),
    "ITEM_LOCKED": ("ITEM_ERROR", 400),
    "ITEM_NOT_FOUND": ("ITEM_ERROR", 400),
    "PRODUCT_NOT_READY": ("ITEM_ERROR", 400),
    "INVALID_ACCESS_TOKEN": ("INVALID_INPUT", 400),
    "INVALID_PUBLIC_TOKEN": ("INVALID_INPUT", 400),
    "INVALID_INSTITUTION": ("INVALID_INPUT", 400),
    "INVALID_API_KEYS": ("INVALID_INPUT", 400),
    "INVALID_INPUT": ("INVALID_INPUT", 400),
    "INVALID_REQUEST": ("INVALID_REQUEST", 400),
    "INVALID_BODY": ("INVALID_REQUEST", 400),
    "INVALID_FIELD": ("INVALID_REQUEST", 400),
    "MISSING_FIELDS": ("INVALID_REQUEST", 400),
    "UNKNOWN_FIELDS": ("INVALID_REQUEST", 400),
    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": ("TRANSACTIONS_ERROR", 400),
    "RATE_LIMIT_EXCEEDED": ("RATE_LIMIT_EXCEEDED", 429),
    "ACCOUNTS_LIMIT": ("RATE_LIMIT_EXCEEDED", 429),
    "TRANSACTIONS_LIMIT": ("RATE_LIMIT_EXCEEDED", 429),
    "TRANSACTIONS_SYNC_LIMIT": ("RATE_LIMIT_EXCEEDED", 429),
    "INSTITUTION_RATE_LIMIT": ("RATE_LIMIT_EXCEEDED", 429),
}

_REQUEST_IDS: web.AppKey[itertools.count[int]] = web.AppKey("plaid_request_ids")


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    client_id: str = ""
    secret: str = ""
    access_token: str = ""
    cursor: str | None = None
    count: int = 100
    options: dict[str, Any] | None = None


def request_id(request: web.Request) -> str:
    ids = request.config_dict[_REQUEST_IDS]
    return f"sbx{next(ids):010d}"


def error_response(
    request: web.Request, code: str, message: str, status: int | None = None
) -> web.Response:
    error_type, usual_status = PLAID_ERRORS.get(code, ("API_ERROR", 500))
    body = {
        "error_type": error_type,
        "error_code": code,
        "error_message": message,
        "display_message": None,
        "request_id": request_id(request),
        "documentation_url": f"https://plaid.com/docs/errors/#{code.lower()}",
        "suggested_action": None,
    }
    return web.json_response(body, status=status or usual_status)


def _fault_response(request: web.Request, fault: Fault) -> web.Response | None:
    if fault.error_code is None and fault.status is None:
        return None
    code = fault.error_code or "INTERNAL_SERVER_ERROR"
    return error_response(request, code, f"sandbox fault: {code}", fault.status)


async def _authorised(request: web.Request) -> tuple[_Request, FakeItem] | web.Response:
    try:
        req = msgspec.json.decode(await request.read(), type=_Request)
    except msgspec.ValidationError as exc:
        code = "UNKNOWN_FIELDS" if "unknown field" in str(exc) else "INVALID_FIELD"
        return error_response(request, code, str(exc))
    except msgspec.DecodeError:
        return error_response(request, "INVALID_BODY", "body could not be parsed as JSON")
    if not req.client_id or not req.secret:
        return error_response(request, "MISSING_FIELDS", "client_id and secret are required")
    if not req.access_token.startswith(TOKEN_PREFIX):
        # Never echo the token back: a provider's message may end up in logs.
        return error_response(
            request, "INVALID_ACCESS_TOKEN", "provided access token is in an invalid format"
        )
    if req.access_token in request.config_dict[LINKS].plaid_removed:
        return error_response(request, "ITEM_NOT_FOUND", "the Item was removed")
    return req, fake_item(request.config_dict[SEED], "plaid", req.access_token)


def _transaction(t: FakeTransaction) -> dict[str, Any]:
    return {
        "transaction_id": t.id,
        "account_id": t.account_id,
        "amount": t.amount,
        "iso_currency_code": "USD",
        "unofficial_currency_code": None,
        "date": t.date,
        "authorized_date": t.date,
        "name": t.name,
        "merchant_name": t.name,
        "pending": t.pending,
        "payment_channel": "in store",
    }


def encode_cursor(item: FakeItem, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{item.item_id}:{offset}".encode()).decode()


def decode_cursor(item: FakeItem, cursor: str) -> int | None:
    """The log offset a cursor stands for, or None if it is not this item's cursor."""
    try:
        item_id, _, offset = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if item_id != item.item_id or not offset.isdigit() or int(offset) > len(item.changes):
        return None
    return int(offset)


async def accounts_get(request: web.Request) -> web.Response:
    found = await _authorised(request)
    if isinstance(found, web.Response):
        return found
    req, item = found
    accounts = [
        {
            "account_id": a.id,
            "name": a.name,
            "official_name": a.name.upper(),
            "mask": a.number[-4:],
            "type": "credit" if a.kind == "CREDIT_CARD" else "depository",
            "subtype": {"CHECKING": "checking", "SAVINGS": "savings"}.get(a.kind, "credit card"),
            "balances": {
                "current": a.current,
                "available": a.available,
                "iso_currency_code": "USD",
                "limit": 5000.0 if a.kind == "CREDIT_CARD" else None,
                "unofficial_currency_code": None,
            },
        }
        for a in item.accounts
    ]
    institution = request.config_dict[LINKS].plaid_institution(req.access_token)
    item_body = {"item_id": item.item_id, "institution_id": institution.plaid_id}
    return web.json_response(
        {"accounts": accounts, "item": item_body, "request_id": request_id(request)}
    )


async def transactions_sync(request: web.Request) -> web.Response:
    found = await _authorised(request)
    if isinstance(found, web.Response):
        return found
    req, item = found
    if not 1 <= req.count <= 500:
        return error_response(request, "INVALID_FIELD", "count must be between 1 and 500")
    start = decode_cursor(item, req.cursor) if req.cursor else 0
    if start is None:
        return error_response(request, "INVALID_FIELD", "cursor not valid for this item")
    page = item.changes[start : start + req.count]
    end = start + len(page)
    return web.json_response(
        {
            "added": [_transaction(c.transaction) for c in page if c.kind == "added"],
            "modified": [_transaction(c.transaction) for c in page if c.kind == "modified"],
            "removed": [
                {"transaction_id": c.transaction.id, "account_id": c.transaction.account_id}
                for c in page
                if c.kind == "removed"
            ],
            "next_cursor": encode_cursor(item, end),
            "has_more": end < len(item.changes),
            "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE",
            "request_id": request_id(request),
        }
    )


def create_plaid_app(prefix: str = "/plaid") -> web.Application:
    """Plaid's routes, to be mounted under `prefix` on the sandbox app."""
    # Imported here: the link routes build on this module's error bodies.
    from sandbox.plaid_link_api import add_link_routes, plaid_context  # noqa: PLC0415

    middleware = fault_middleware("plaid", prefix, _fault_response, context=plaid_context)
    app = web.Application(middlewares=[middleware])
    app[_REQUEST_IDS] = itertools.count(1)
    app.router.add_post("/accounts/get", accounts_get)
    app.router.add_post("/transactions/sync", transactions_sync)
    add_link_routes(app)
    return app

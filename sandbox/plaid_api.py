"""A local Plaid: `/accounts/get` and `/transactions/sync` with real cursors and error bodies.

An Item's `/transactions/sync` feed is Plaid's view of its person's bank
(`truth.py`): first the bank as it stood when Plaid first aggregated it
(every transaction `added`), then one entry per change since, as Plaid
reports them: an authorisation is `added` pending; its posting removes the
pending id and adds the posted transaction under a new id whose
`pending_transaction_id` is the pending one; a release or reversal is
`removed`; a correction is `modified`. A cursor is an offset into that log.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from typing import Any, Literal

import msgspec
from aiohttp import web

from sandbox.faults import Fault
from sandbox.links import LINKS
from sandbox.middleware import TRUTH, fault_middleware
from sandbox.truth import Bank, BankTransaction
from sandbox.views import account_id, plaid_ids

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


class PlaidChange(msgspec.Struct, frozen=True):
    kind: Literal["added", "modified", "removed"]
    body: dict[str, Any]


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """An access token's Item: its id and the bank it reads."""

    item_id: str
    bank: Bank


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


async def _authorised(request: web.Request) -> tuple[_Request, Item] | web.Response:
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
    return req, item_of(request, req.access_token)


def item_of(request: web.Request, access_token: str) -> Item:
    links = request.config_dict[LINKS]
    person, institution = links.plaid_person(access_token), links.plaid_institution(access_token)
    bank = request.config_dict[TRUTH].bank(person, institution)
    return Item(item_id=links.plaid_item_id(access_token), bank=bank)


def _transaction(bank: Bank, t: BankTransaction) -> dict[str, Any]:
    transaction_id, pending_transaction_id = plaid_ids(bank, t)
    account = next(a for a in bank.accounts if a.id == t.account_id)
    return {
        "transaction_id": transaction_id,
        "pending_transaction_id": pending_transaction_id,
        "account_id": account_id("plaid", bank, account),
        "amount": t.amount,
        "iso_currency_code": bank.currency,
        "unofficial_currency_code": None,
        "date": t.date,
        "authorized_date": t.authorized_date,
        "name": t.counterparty,
        "merchant_name": t.merchant,
        "pending": t.pending,
        "payment_channel": "in store" if t.kind == "card" else "other",
    }


def _removed(bank: Bank, t: BankTransaction, pending: bool) -> dict[str, Any]:
    account = next(a for a in bank.accounts if a.id == t.account_id)
    transaction_id, pending_id = plaid_ids(bank, t)
    gone = pending_id if pending and pending_id else transaction_id
    return {"transaction_id": gone, "account_id": account_id("plaid", bank, account)}


def sync_log(bank: Bank) -> list[PlaidChange]:
    """Plaid's change log for the bank: its first aggregation, then every change since."""
    first = sorted(
        (t for t in bank.at_history_end().values() if t.live), key=lambda t: (t.date, t.id)
    )
    log = [PlaidChange("added", _transaction(bank, t)) for t in first]
    for event in bank.events[bank.history :]:
        t = event.transaction
        if event.kind in ("authorized", "posted"):
            log.append(PlaidChange("added", _transaction(bank, t)))
        elif event.kind == "settled":
            log.append(PlaidChange("removed", _removed(bank, t, pending=True)))
            log.append(PlaidChange("added", _transaction(bank, t)))
        elif event.kind == "withdrawn":
            log.append(PlaidChange("removed", _removed(bank, t, pending=t.pending)))
        else:
            log.append(PlaidChange("modified", _transaction(bank, t)))
    return log


def encode_cursor(item: Item, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{item.item_id}:{offset}".encode()).decode()


def decode_cursor(item: Item, cursor: str, length: int) -> int | None:
    """The log offset a cursor stands for, or None if it is not this item's cursor."""
    try:
        item_id, _, offset = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if item_id != item.item_id or not offset.isdigit() or int(offset) > length:
        return None
    return int(offset)


async def accounts_get(request: web.Request) -> web.Response:
    found = await _authorised(request)
    if isinstance(found, web.Response):
        return found
    req, item = found
    bank = item.bank
    accounts = []
    for a in bank.accounts:
        current, available = bank.balances(a)
        accounts.append(
            {
                "account_id": account_id("plaid", bank, a),
                "name": a.name,
                "official_name": a.name.upper(),
                "mask": a.number[-4:],
                "type": "credit" if a.kind == "CREDIT_CARD" else "depository",
                "subtype": {"CHECKING": "checking", "SAVINGS": "savings"}.get(
                    a.kind, "credit card"
                ),
                "balances": {
                    "current": current,
                    "available": available,
                    "iso_currency_code": bank.currency,
                    "limit": 5000.0 if a.kind == "CREDIT_CARD" else None,
                    "unofficial_currency_code": None,
                },
            }
        )
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
    log = item.bank.view("plaid", sync_log)
    start = decode_cursor(item, req.cursor, len(log)) if req.cursor else 0
    if start is None:
        return error_response(request, "INVALID_FIELD", "cursor not valid for this item")
    page = log[start : start + req.count]
    end = start + len(page)
    return web.json_response(
        {
            "added": [c.body for c in page if c.kind == "added"],
            "modified": [c.body for c in page if c.kind == "modified"],
            "removed": [c.body for c in page if c.kind == "removed"],
            "next_cursor": encode_cursor(item, end),
            "has_more": end < len(log),
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

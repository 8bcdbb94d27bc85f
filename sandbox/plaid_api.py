"""A local Plaid: `/accounts/get` and `/transactions/sync` with real cursors and error bodies.

An Item's `/transactions/sync` feed is Plaid's view of its person's bank
(`truth.py`): first the bank as it stood when Plaid first aggregated it
(every transaction `added`), then one entry per change since, as Plaid
reports them: an authorisation is `added` pending; its posting removes the
pending id and adds the posted transaction under a new id whose
`pending_transaction_id` is the pending one; a release or reversal is
`removed`; a correction is `modified`. A cursor is an offset into that log.

The first aggregation lists the last 30 days first, then the older history:
an Item the link flow just made is not ready at first (`NOT_READY`, no
transactions, an empty cursor), then serves only those 30 days
(`INITIAL_UPDATE_COMPLETE`) until a caller has paged to their end, then the
rest (`HISTORICAL_UPDATE_COMPLETE`), as Plaid's initial and historical pulls
land one after the other (`links.PlaidItem`). Bodies carry every field
Plaid's OpenAPI document requires (tests/specs), null where the bank does
not say.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from typing import Any, Literal

import msgspec
from aiohttp import web

from sandbox.faults import Fault
from sandbox.institutions import FakeInstitution
from sandbox.json_answer import json_response
from sandbox.links import (
    HISTORICAL_UPDATE_COMPLETE,
    INITIAL_UPDATE_COMPLETE,
    LINKS,
    NOT_READY,
    PlaidItem,
)
from sandbox.middleware import TRUTH, fault_middleware
from sandbox.truth import DAY_S, HISTORY_END, Bank, BankTransaction, iso_date, iso_time
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
_ENCODER = msgspec.json.Encoder()
# Plaid's initial pull after a link: the most recent 30 days.
INITIAL_PULL_DAYS = 30
_INITIAL_FROM = iso_date(HISTORY_END + 1 - INITIAL_PULL_DAYS * DAY_S)
# A bare token's Item, made long before: its products, what a link made without any gets.
_DEFAULT_PRODUCTS = ("transactions",)
_PAYMENT_META_KEYS = (
    "reference_number", "ppd_id", "payee", "by_order_of", "payer",
    "payment_method", "payment_processor", "reason",
)  # fmt: skip
_LOCATION_KEYS = (
    "address",
    "city",
    "region",
    "postal_code",
    "country",
    "lat",
    "lon",
    "store_number",
)


class PlaidChange(msgspec.Struct, frozen=True):
    kind: Literal["added", "modified", "removed"]
    body: dict[str, Any]


class _EncodedChange(msgspec.Struct, frozen=True):
    """A change of the log with its body already JSON, for a page to splice in."""

    kind: Literal["added", "modified", "removed"]
    body: msgspec.Raw


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """An access token's Item: its id, the bank it reads, and its link-flow state if any."""

    item_id: str
    bank: Bank
    institution: FakeInstitution
    linked: PlaidItem | None = None


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
    return json_response(body, status=status or usual_status)


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
    config = request.config_dict  # made anew on each access
    links = config[LINKS]
    person, institution = links.plaid_person(access_token), links.plaid_institution(access_token)
    bank = config[TRUTH].bank(person, institution)
    return Item(
        item_id=links.plaid_item_id(access_token),
        bank=bank,
        institution=institution,
        linked=links.plaid_items.get(access_token),
    )


def _payment_channel(t: BankTransaction) -> str:
    if t.kind != "card":
        return "other"
    # An online merchant's descriptor names its web site ("AMZN.COM/BILL", "HELP.UBER.COM").
    return "online" if ".COM" in t.description else "in store"


def _payment_meta(t: BankTransaction) -> dict[str, str | None]:
    """Plaid's ACH details: who paid a payroll credit, whom a bill paid; null for cards."""
    meta: dict[str, str | None] = dict.fromkeys(_PAYMENT_META_KEYS)
    if t.kind == "payroll":
        meta.update(payer=t.counterparty, payment_method="ACH")
    elif t.kind == "bill":
        meta.update(payee=t.counterparty, payment_method="ACH")
    return meta


def _account_ids(bank: Bank) -> dict[str, str]:
    """Plaid's id of each of the bank's accounts, by the bank's id: hashed once, not per
    transaction (`Bank.view`)."""
    return bank.view(
        "plaid-account-ids", lambda b: {a.id: account_id("plaid", b, a) for a in b.accounts}
    )


def _transaction(bank: Bank, t: BankTransaction) -> dict[str, Any]:
    transaction_id, pending_transaction_id = plaid_ids(bank, t)
    return {
        "transaction_id": transaction_id,
        "pending_transaction_id": pending_transaction_id,
        "account_id": _account_ids(bank)[t.account_id],
        "account_owner": None,
        "amount": t.amount,
        "iso_currency_code": bank.currency,
        "unofficial_currency_code": None,
        "date": t.date,
        "datetime": iso_time(t.posted_at) if t.posted_at is not None else None,
        "authorized_date": t.authorized_date,
        "authorized_datetime": (iso_time(t.authorized_at) if t.authorized_at is not None else None),
        "name": t.counterparty,
        "merchant_name": t.merchant,
        "pending": t.pending,
        "payment_channel": _payment_channel(t),
        "payment_meta": _payment_meta(t),
        # The bank gives no place: every key, all null, as Plaid sends it then.
        "location": dict.fromkeys(_LOCATION_KEYS),
        # Plaid fills transaction codes for European institutions only.
        "transaction_code": None,
    }


def _removed(bank: Bank, t: BankTransaction, pending: bool) -> dict[str, Any]:
    transaction_id, pending_id = plaid_ids(bank, t)
    gone = pending_id if pending and pending_id else transaction_id
    return {"transaction_id": gone, "account_id": _account_ids(bank)[t.account_id]}


def _first_aggregation(bank: Bank) -> tuple[list[BankTransaction], list[BankTransaction]]:
    """What Plaid first aggregated: (the last 30 days, the older history), oldest first."""
    # Each date worked out once: a new bank's log is most of its first answer (issue #13).
    first = sorted((t.date, t.id, t) for t in bank.at_history_end().values() if t.live)
    recent = [t for day, _, t in first if day >= _INITIAL_FROM]
    return recent, [t for day, _, t in first if day < _INITIAL_FROM]


def initial_pull_size(bank: Bank) -> int:
    """How many entries open the log with the initial pull (the last 30 days)."""
    return len(_first_aggregation(bank)[0])


def sync_log(bank: Bank) -> list[PlaidChange]:
    """Plaid's change log for the bank: its first aggregation (the last 30 days, then the
    older history), then every change since."""
    recent, older = _first_aggregation(bank)
    log = [PlaidChange("added", _transaction(bank, t)) for t in (*recent, *older)]
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


def _encoded_sync_log(bank: Bank) -> list[_EncodedChange]:
    """The change log with each body encoded once per state of the bank (`Bank.view`),
    not once per page that carries it: encoding was most of a page's cost (issue #13)."""
    return [
        _EncodedChange(c.kind, msgspec.Raw(_ENCODER.encode(c.body)))
        for c in bank.view("plaid", sync_log)
    ]


def _encoded_accounts(bank: Bank) -> msgspec.Raw:
    """The Item's accounts, as JSON; every page of `/transactions/sync` carries them."""
    return msgspec.Raw(_ENCODER.encode(bank.view("plaid-accounts", _accounts)))


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


def _accounts(bank: Bank) -> list[dict[str, Any]]:
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
    return accounts


def _item(item: Item) -> dict[str, Any]:
    """Plaid's Item: every field its schema requires; no error, no consent expiry."""
    billed = sorted(item.linked.products if item.linked else _DEFAULT_PRODUCTS)
    return {
        "item_id": item.item_id,
        "institution_id": item.institution.plaid_id,
        "institution_name": item.institution.name,
        "webhook": item.linked.webhook if item.linked else None,
        "error": None,
        "available_products": sorted(set(item.institution.products) - set(billed)),
        "billed_products": billed,
        "products": billed,
        "consent_expiration_time": None,
        "update_type": "background",
    }


async def accounts_get(request: web.Request) -> web.Response:
    found = await _authorised(request)
    if isinstance(found, web.Response):
        return found
    _, item = found
    body = {
        "accounts": item.bank.view("plaid-accounts-json", _encoded_accounts),
        "item": _item(item),
    }
    return json_response({**body, "request_id": request_id(request)})


async def transactions_sync(request: web.Request) -> web.Response:
    found = await _authorised(request)
    if isinstance(found, web.Response):
        return found
    req, item = found
    if not 1 <= req.count <= 500:
        return error_response(request, "INVALID_FIELD", "count must be between 1 and 500")
    status = item.linked.update_status if item.linked else HISTORICAL_UPDATE_COMPLETE
    if item.linked is not None and status == NOT_READY:
        # Plaid's first pull lands before the caller comes back.
        item.linked.update_status = INITIAL_UPDATE_COMPLETE
        return _sync_answer(request, item, [], "", has_more=False, status=NOT_READY)
    log = item.bank.view("plaid-json", _encoded_sync_log)
    ready = len(log)
    if status == INITIAL_UPDATE_COMPLETE:
        ready = item.bank.view("plaid-initial", initial_pull_size)
    start = decode_cursor(item, req.cursor, ready) if req.cursor else 0
    if start is None:
        return error_response(request, "INVALID_FIELD", "cursor not valid for this item")
    page = log[start : min(start + req.count, ready)]
    end = start + len(page)
    if item.linked is not None and status == INITIAL_UPDATE_COMPLETE and end == ready:
        # The caller has the last 30 days; the historical pull lands meanwhile.
        item.linked.update_status = HISTORICAL_UPDATE_COMPLETE
    cursor = encode_cursor(item, end)
    return _sync_answer(request, item, page, cursor, has_more=end < ready, status=status)


def _sync_answer(
    request: web.Request,
    item: Item,
    page: list[_EncodedChange],
    next_cursor: str,
    *,
    has_more: bool,
    status: str,
) -> web.Response:
    """A `/transactions/sync` body: the Item's accounts with it, once transactions are ready."""
    accounts: msgspec.Raw | list[Any] = (
        [] if status == NOT_READY else item.bank.view("plaid-accounts-json", _encoded_accounts)
    )
    return json_response(
        {
            "accounts": accounts,
            "added": [c.body for c in page if c.kind == "added"],
            "modified": [c.body for c in page if c.kind == "modified"],
            "removed": [c.body for c in page if c.kind == "removed"],
            "next_cursor": next_cursor,
            "has_more": has_more,
            "transactions_update_status": status,
            "request_id": request_id(request),
        }
    )


def _through_the_bank(fault: Fault, endpoint: str) -> bool:
    """A bank's outage reaches the calls that go through the bank, not Plaid's own
    directory of institutions (which reports the outage, in its status)."""
    about_a_bank = fault.institution is not None or fault.institution_name is not None
    return not (about_a_bank and fault.endpoint is None and endpoint.startswith("/institutions/"))


def create_plaid_app(prefix: str = "/plaid") -> web.Application:
    """Plaid's routes, to be mounted under `prefix` on the sandbox app."""
    # Imported here: the link routes build on this module's error bodies.
    from sandbox.plaid_link_api import add_link_routes, plaid_context  # noqa: PLC0415

    middleware = fault_middleware(
        "plaid", prefix, _fault_response, accepts=_through_the_bank, context=plaid_context
    )
    app = web.Application(middlewares=[middleware])
    app[_REQUEST_IDS] = itertools.count(1)
    app.router.add_post("/accounts/get", accounts_get)
    app.router.add_post("/transactions/sync", transactions_sync)
    add_link_routes(app)
    return app

"""The fake Belvo's data and shapes: links, institutions, accounts, transactions, errors.

Belvo serves Latin America, so its institutions are the directory's Mexican
banks, named as Belvo names them (`bancorebozo_mx_retail`). A link reads its
username's bank at its institution (`truth.py`): one row per transaction,
whose id stays the same when it posts (`PENDING` → `PROCESSED`), dated
`value_date` (when it happened) and `accounting_date` (when it posted),
described as the bank words it, and stamped `created_at` when Belvo stored it.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import msgspec
from aiohttp import web

from sandbox.institutions import FakeInstitution, directory
from sandbox.truth import Bank, BankTransaction, TruthBook, iso_time
from sandbox.views import account_id, belvo_description, transaction_id

# error code -> (HTTP status, Belvo's message), as Belvo documents them.
BELVO_ERRORS: dict[str, tuple[int, str]] = {
    "login_error": (400, "Invalid credentials provided to login to the institution"),
    "activation_failed": (400, "The credentials provided were not accepted by the institution"),
    "invalid_link": (400, "The link is invalid, credentials need to be updated"),
    "unconfirmed_link": (400, "The link is not confirmed"),
    "session_expired": (400, "The session you are trying to resume has expired"),
    "too_many_sessions": (400, "A session is already opened with the institution"),
    "institution_down": (400, "The financial institution is down, try again later"),
    "institution_unavailable": (400, "The institution is unavailable"),
    "institution_inactive": (400, "The institution is inactive"),
    "unsupported_operation": (400, "The institution does not support this operation"),
    "does_not_exist": (400, "Object does not exist"),
    "required": (400, "This field is required."),
    "authentication_failed": (401, "Invalid Secret Keys"),
    "permission_denied": (403, "You do not have permission to perform this action."),
    "not_found": (404, "Not found."),
    "request_timeout": (408, "The request timed out, try again with a smaller date range"),
    "token_required": (428, "A MFA token is required by the institution to login"),
    "too_many_requests": (429, "Request was throttled."),
    "unexpected_error": (500, "Belvo is unable to process the request"),
    "service_unavailable": (503, "Belvo is temporarily unavailable"),
}
_STATUS_CODES = {
    400: "validation_error",
    401: "authentication_failed",
    403: "permission_denied",
    404: "not_found",
    408: "request_timeout",
    428: "token_required",
    429: "too_many_requests",
    500: "unexpected_error",
    503: "service_unavailable",
}
# Belvo's sandbox convention for a login the bank refuses; not a secret.
BAD_LOGIN_PASSWORD = "invalid"  # noqa: S105
_CATEGORIES = {"CHECKING": "CHECKING_ACCOUNT", "SAVINGS": "SAVINGS_ACCOUNT"}


class BelvoLink(msgspec.Struct, kw_only=True):
    id: str
    institution: str
    username: str
    status: str = "valid"
    # Belvo keeps the partner's id for the person (widget or POST /api/links/).
    external_id: str | None = None


class BelvoState(msgspec.Struct, kw_only=True):
    links: dict[str, BelvoLink]
    request_ids: itertools.count[int]


STATE = web.AppKey("belvo_state", BelvoState)


def error_response(request: web.Request, code: str, status: int | None = None) -> web.Response:
    usual, message = BELVO_ERRORS.get(code, (400, code))
    request_id = f"{next(request.config_dict[STATE].request_ids):032x}"
    body: Any = {"request_id": request_id, "message": message, "code": code}
    # Belvo answers a 401 with one object, everything else with a list of errors.
    status = status or usual
    return web.json_response(body if status == 401 else [body], status=status)


def paged(request: web.Request, rows: list[dict[str, Any]]) -> web.Response:
    try:
        page = int(request.query.get("page", "1"))
        size = min(int(request.query.get("page_size", "100")), 1000)
    except ValueError:
        return error_response(request, "invalid")
    if page < 1 or size < 1:
        return error_response(request, "invalid")
    chunk = rows[(page - 1) * size : page * size]
    more = page * size < len(rows)
    next_url = str(request.url.update_query(page=str(page + 1))) if more else None
    previous = str(request.url.update_query(page=str(page - 1))) if page > 1 else None
    return web.json_response(
        {"count": len(rows), "next": next_url, "previous": previous, "results": chunk}
    )


def fault_code(status: int | None, code: str | None) -> str:
    return code or _STATUS_CODES.get(status or 500, "unexpected_error")


def link_id(institution: str, username: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"belvo:{institution}:{username}"))


def institution_name(institution: FakeInstitution) -> str:
    slug = "".join(c for c in institution.name.lower() if c.isalpha())
    return f"{slug}_{institution.country.lower()}_retail"


def institutions(seed: int) -> list[FakeInstitution]:
    return [i for i in directory(seed) if i.country == "MX"]


def institution_body(index: int, institution: FakeInstitution) -> dict[str, Any]:
    return {
        "id": 100 + index,
        "name": institution_name(institution),
        "type": "bank",
        "display_name": institution.name,
        "website": institution.url,
        "country_code": institution.country,
        "country_codes": [institution.country],
        "status": "healthy",
        "resources": ["ACCOUNTS", "TRANSACTIONS", "BALANCES", "OWNERS"],
    }


def link_bank(truth: TruthBook, link: BelvoLink) -> Bank:
    """The bank a link reads: its username's, at its institution."""
    found = next(i for i in institutions(truth.seed) if institution_name(i) == link.institution)
    return truth.bank(link.username, found)


def account_body(bank: Bank, link: str) -> list[dict[str, Any]]:
    rows = []
    for a in bank.accounts:
        current, available = bank.balances(a)
        rows.append(
            {
                "id": account_id("belvo", bank, a),
                "link": link,
                "category": _CATEGORIES.get(a.kind, "CREDIT_CARD"),
                "type": a.name,
                "name": a.name,
                "number": a.number,
                "currency": bank.currency,
                "balance": {"current": current, "available": available},
            }
        )
    return rows


def transaction_rows(bank: Bank, link: str) -> list[dict[str, Any]]:
    """In the order Belvo stored them (`created_at`), for watermark filters."""
    live = sorted(bank.live(), key=lambda t: (t.created_at, t.id))
    return [_transaction(bank, link, t) for t in live]


def _transaction(bank: Bank, link: str, t: BankTransaction) -> dict[str, Any]:
    account = next(a for a in bank.accounts if a.id == t.account_id)
    value = t.authorized_date or t.date
    return {
        "id": transaction_id("belvo", bank, t.id),
        "account": {"id": account_id("belvo", bank, account), "link": link},
        "created_at": iso_time(t.created_at),
        "value_date": value,
        "accounting_date": t.posted_date,
        "amount": abs(t.amount),
        "currency": bank.currency,
        "description": belvo_description(t),
        "merchant": {"name": t.merchant} if t.merchant else None,
        "type": "INFLOW" if t.amount < 0 else "OUTFLOW",
        "status": "PENDING" if t.pending else "PROCESSED",
    }

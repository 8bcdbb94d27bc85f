"""A local Bitso v3: signed balance and ledger calls, public books, Bitso's own error bodies.

Requests are authenticated as Bitso does: the HMAC-SHA256 signature over
nonce + method + path (with query) + body is checked against the secret the
sandbox issued for the key (`bitso_data.api_secret_for`), and nonces must grow
per key.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web

from sandbox.bitso_data import BOOKS, api_secret_for, fake_account
from sandbox.faults import Fault
from sandbox.middleware import SEED, fault_middleware

# code -> (HTTP status, message), as Bitso documents them.
BITSO_ERRORS: dict[str, tuple[int, str]] = {
    "0101": (500, "Unknown Error"),
    "0201": (401, "Check your credentials"),
    "0202": (401, "API key is not authorized to execute the requested method"),
    "0206": (401, "Invalid nonce type"),
    "0207": (401, "Invalid nonce value"),
    "0208": (401, "Authentication is required to execute requested operation"),
    "0213": (401, "IP address is not allowed to access this resource"),
    "0215": (401, "Incorrect request signature"),
    "0320": (400, "Invalid pagination parameters"),
    "0326": (400, "API key is not active"),
    "0801": (420, "You have hit the request rate-limit"),
    "0901": (400, "Unsupported HTTP method"),
}
_STATUS_CODES = {401: "0201", 420: "0801", 429: "0801", 400: "0303"}
_CATEGORY_STATUS = {"01": 500, "02": 401, "08": 420, "14": 404}

_NONCES: web.AppKey[dict[str, int]] = web.AppKey("bitso_nonces")


def error_response(
    code: str, status: int | None = None, message: str | None = None
) -> web.Response:
    usual_status, usual_message = BITSO_ERRORS.get(code, (_CATEGORY_STATUS.get(code[:2], 400), ""))
    body = {"success": False, "error": {"code": code, "message": message or usual_message or code}}
    return web.json_response(body, status=status or usual_status)


def _fault_response(request: web.Request, fault: Fault) -> web.Response | None:
    if fault.error_code is None and fault.status is None:
        return None
    code = fault.error_code or _STATUS_CODES.get(fault.status or 500, "0101")
    return error_response(code, fault.status)


def _parse_authorization(header: str) -> tuple[str, str, str] | None:
    """(key, nonce, signature) from `Bitso <key>:<nonce>:<signature>`, or None."""
    scheme, _, credentials = header.partition(" ")
    parts = credentials.split(":")
    if scheme != "Bitso" or len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def _expected_signature(secret: str, nonce: str, method: str, path_qs: str) -> str:
    # Written here from Bitso's documentation, not imported from our adapter:
    # a sandbox that shared the client's code could not catch the client's mistakes.
    message = f"{nonce}{method.upper()}{path_qs}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _authorised(request: web.Request) -> str | web.Response:
    """The calling key, or the error Bitso answers for a badly signed request."""
    parsed = _parse_authorization(request.headers.get("Authorization", ""))
    if parsed is None:
        return error_response("0208")
    key, nonce, sent = parsed
    if not nonce.isdigit():
        return error_response("0206")
    seen = request.config_dict[_NONCES]
    if int(nonce) <= seen.get(key, 0):
        return error_response("0207")
    secret = api_secret_for(request.config_dict[SEED], key)
    expected = _expected_signature(secret, nonce, request.method, request.path_qs)
    # Constant-time, as a real server must: the sandbox is also a reference.
    if not hmac.compare_digest(expected, sent):
        return error_response("0201")
    seen[key] = int(nonce)
    return key


def _ok(payload: Any) -> web.Response:
    return web.json_response({"success": True, "payload": payload})


async def available_books(request: web.Request) -> web.Response:
    limits = {"minimum_amount": "0.00001", "maximum_amount": "500.00", "minimum_value": "10.00"}
    return _ok([{"book": b, **limits} for b in BOOKS])


async def balance(request: web.Request) -> web.Response:
    key = _authorised(request)
    if isinstance(key, web.Response):
        return key
    balances, _ = fake_account(request.config_dict[SEED], key)
    return _ok({"balances": list(balances)})


async def ledger(request: web.Request) -> web.Response:
    key = _authorised(request)
    if isinstance(key, web.Response):
        return key
    _, entries = fake_account(request.config_dict[SEED], key)
    sort, marker = request.query.get("sort", "desc"), request.query.get("marker")
    limit = request.query.get("limit", "25")
    if sort not in ("asc", "desc") or not limit.isdigit() or not 1 <= int(limit) <= 100:
        return error_response("0320")
    ordered = list(entries) if sort == "asc" else list(reversed(entries))
    start = 0
    if marker:
        ids = [e["eid"] for e in ordered]
        if marker not in ids:
            return error_response("0320")
        start = ids.index(marker) + 1
    return _ok(ordered[start : start + int(limit)])


def create_bitso_app(prefix: str = "/bitso") -> web.Application:
    """Bitso's routes, to be mounted under `prefix` on the sandbox app."""
    app = web.Application(middlewares=[fault_middleware("bitso", prefix, _fault_response)])
    app[_NONCES] = {}
    app.router.add_get("/v3/available_books/", available_books)
    app.router.add_get("/v3/balance/", balance)
    app.router.add_get("/v3/ledger/", ledger)
    return app

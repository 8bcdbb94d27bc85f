"""Bitso's error bodies in our taxonomy, by a table of its four-digit codes.

Bitso answers `{"success": false, "error": {"code": "0201", "message": ...}}`.
The first two digits are a category (01 unknown, 02 authentication, 03
validation, 08 throttling, ...), so a code Bitso adds later is still
classified by its category; the HTTP status decides only when the body is
not Bitso's (a gateway's page on a 5xx).

Sources: docs.bitso.com/bitso-api/docs, "Error Categories" and the pages
under it (01 Unknown, 02 Authentication: 0201-0216, 03 Validation, 08 Rate
limit, 09 Unsupported method), and "History of Changes" for the codes added
since. Codes of the order, withdrawal and funding pages cannot answer the
read-only calls we make (/v3/balance, /v3/ledger, /v3/available_books): their
category classifies them. tests/unit/test_documented_error_codes.py lists every
code this table answers for.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from services.providers.base import ProviderCallError
from services.providers.http import UNKNOWN_RULE, ErrorRule, HttpReply, error_without_body, scrub

# Bitso locks a throttled account out for one minute and sends no Retry-After.
THROTTLE_LOCKOUT_S = 60.0

# Failover follows the type (http.ErrorRule) except where noted. Bitso's API key
# and request shapes are Bitso's alone: the chain reader reads the same wallet
# without them, so a relink or a request Bitso rejects still leaves it a way.
_DOWN = ErrorRule("provider_down", True, failover_helps=True, blame="provider")
_RELINK = ErrorRule("auth", False, reauth_required=True, failover_helps=True, blame="person")
# A request our Bitso adapter shaped wrong: our bug, which the chain reader does not share.
_OUR_BUG = ErrorRule("validation", False, failover_helps=True, blame="syncyard")
_THROTTLED = ErrorRule("rate_limit", True, failover_helps=True, blame="provider")

# The codes Bitso documents that /v3/balance, /v3/ledger and /v3/available_books
# can return (docs.bitso.com, "Error Categories" and the pages under it).
BITSO_ERRORS: Mapping[str, ErrorRule] = {
    "0101": _DOWN,  # Unknown error
    "0201": _RELINK,  # Check your credentials (was: invalid nonce or credentials)
    "0202": _RELINK,  # API key is not authorized to execute the requested method
    "0203": _RELINK,  # Login token is invalid or expired
    "0204": _RELINK,  # Incorrect PIN
    # Too many login attempts: Bitso unlocks the key after a while by itself.
    "0205": ErrorRule("auth", True, failover_helps=True, blame="person"),
    "0206": _OUR_BUG,  # Invalid nonce type
    # Invalid nonce value: another process signed with the same key in between;
    # the next call carries a fresh nonce.
    "0207": ErrorRule("auth", True, failover_helps=False, blame="syncyard"),
    "0208": _RELINK,  # Authentication is required to execute the requested operation
    "0209": _RELINK,  # Two-factor authentication required
    "0210": _RELINK,  # Device authentication required
    "0211": _RELINK,  # Device authentication failed (invalid IP or expired token)
    # Access denied (reserved for internal use).
    "0212": ErrorRule("auth", False, failover_helps=True, blame="provider"),
    # The key's IP allowlist excludes us: only the key's owner can change that.
    "0213": _RELINK,
    # Invalid reCAPTCHA: a check of Bitso's web login, which only the person passes.
    "0214": ErrorRule("auth", False, failover_helps=True, blame="person"),
    "0215": _RELINK,  # Incorrect request signature: the secret we hold is wrong
    # Account restricted: nothing the person can fix by relinking.
    "0216": ErrorRule("auth", False, failover_helps=True, blame="person"),
    "0303": _OUR_BUG,  # Required field missing
    "0304": _OUR_BUG,  # Required field not valid
    "0310": _OUR_BUG,  # Incorrect WID
    "0311": _OUR_BUG,  # Incorrect FID
    "0313": _OUR_BUG,  # Selected currency not supported
    # Invalid pagination parameters: our ledger marker is not this account's.
    "0320": ErrorRule("validation", False, failover_helps=False, blame="caller"),
    "0326": _RELINK,  # API key is not active
    # Service unavailable for the requesting location/country: Bitso refuses our
    # egress region, which retrying will not change: Bitso's alone.
    "0327": ErrorRule("provider_down", False, failover_helps=True, blame="provider"),
    "0328": ErrorRule("provider_down", False, failover_helps=True, blame="provider"),
    "0801": _THROTTLED,  # You have hit the request rate-limit
    "0802": _THROTTLED,  # Too many attempts to perform an operation
    "0901": _OUR_BUG,  # Unsupported HTTP method
}

# Used only when the code is not in the table: the first two digits of a code.
BITSO_ERROR_CATEGORIES: Mapping[str, ErrorRule] = {
    "01": _DOWN,
    "02": _RELINK,
    "03": _OUR_BUG,
    "08": _THROTTLED,
    "09": _OUR_BUG,
    "14": _OUR_BUG,
    "17": _OUR_BUG,
}

# A reply whose body is not Bitso's: the status is all there is.
BITSO_HTTP_STATUSES: Mapping[int, tuple[str, ErrorRule]] = {
    401: ("http_401", _RELINK),
    # Bitso throttles with 420 ("enhance your calm"), its CDN with 429.
    420: ("http_420", _THROTTLED),
    429: ("http_429", _THROTTLED),
    500: ("http_500", _DOWN),
    502: ("http_502", _DOWN),
    # Bitso's own maintenance, not a bank's: the chain reader serves meanwhile.
    503: ("http_503", ErrorRule("maintenance", True, failover_helps=True, blame="provider")),
    504: ("http_504", _DOWN),
}


class _BitsoErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str = ""


class BitsoErrorBody(msgspec.Struct, frozen=True):
    error: _BitsoErrorDetail
    success: bool = False


def rule_for(code: str) -> ErrorRule:
    """How a Bitso error code is handled: by the table, else by its category."""
    return BITSO_ERRORS.get(code) or BITSO_ERROR_CATEGORIES.get(code[:2]) or UNKNOWN_RULE


def bitso_error(
    http_status: int,
    body: bytes,
    *,
    provider: str = "bitso",
    retry_after_s: float | None = None,
    secrets: tuple[str, ...] = (),
    endpoint: str = "bitso",
) -> ProviderCallError:
    """Classify Bitso's error body (or, failing that, its HTTP status)."""
    try:
        parsed = msgspec.json.decode(body, type=BitsoErrorBody)
    except msgspec.DecodeError:
        parsed = None
    if parsed is not None:
        code, rule = parsed.error.code, rule_for(parsed.error.code)
        message = f"{endpoint}: {parsed.error.message or code}"
    elif http_status in BITSO_HTTP_STATUSES:
        (code, rule), message = BITSO_HTTP_STATUSES[http_status], f"{endpoint}: HTTP {http_status}"
    else:
        reply = HttpReply(status=http_status, body=body, retry_after_s=retry_after_s)
        return error_without_body(provider, endpoint, reply)
    if rule.type == "rate_limit" and retry_after_s is None:
        retry_after_s = THROTTLE_LOCKOUT_S
    return rule.error(
        provider,
        code,
        scrub(message, *secrets),
        http_status=http_status,
        retry_after_s=retry_after_s,
    )

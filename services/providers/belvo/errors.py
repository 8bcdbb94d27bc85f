"""Belvo's failures in our taxonomy, by the error code in its body.

Belvo answers a list of errors, `[{"request_id", "message", "code", "field"?}]`
(a 401 may send one object rather than a list). The first error's code
decides; the HTTP status only when the code is not one Belvo documents. A
link's own `status` (valid, invalid, unconfirmed, token_required) tells, like
an MX member's, whether reads can go on at all.

Sources: developers.belvo.com "Belvo API and Widget Errors"
(developers.belvo.com/docs/belvo-api-errors: the response codes 400, 401,
403, 404, 405, 408, 409, 428, 500 and each documented error code) and
Belvo's OpenAPI specification (belvoopenapispec: 429 and 503 answers).
tests/unit/test_documented_error_codes.py lists every code this table answers for.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from services.providers.base import ProviderCallError
from services.providers.http import UNKNOWN_RULE, ErrorRule, HttpReply, error_without_body, scrub

# The person's standing at the bank itself (their password, online banking not
# activated, a locked login): every provider's login to the bank meets it.
_USER_MUST_ACT_AT_BANK = ErrorRule(
    "auth", False, reauth_required=True, failover_helps=False, blame="person"
)
# The person must finish Belvo's own session (an MFA token, a link never
# confirmed): a link at another provider holds its own login.
_USER_MUST_ACT_AT_BELVO = ErrorRule(
    "auth", False, reauth_required=True, failover_helps=True, blame="person"
)
# Our secret id and password are Belvo's alone: another provider does not need them.
_OUR_CREDENTIALS = ErrorRule("auth", False, failover_helps=True, blame="provider")
_BAD_REQUEST = ErrorRule("validation", False, failover_helps=False, blame="caller")
# The bank is down or not answering: every provider waits as Belvo does.
_INSTITUTION_DOWN = ErrorRule("provider_down", True, failover_helps=False, blame="institution")
_BELVO_DOWN = ErrorRule("provider_down", True, failover_helps=True, blame="provider")
_THROTTLED = ErrorRule("rate_limit", True, failover_helps=True, blame="provider")

BELVO_ERRORS: Mapping[str, ErrorRule] = {
    "login_error": _USER_MUST_ACT_AT_BANK,  # invalid credentials, locked or blocked account
    "activation_failed": _USER_MUST_ACT_AT_BANK,  # online banking not activated
    "invalid_link": _USER_MUST_ACT_AT_BANK,  # link status invalid: credentials changed
    "unconfirmed_link": _USER_MUST_ACT_AT_BELVO,  # link never finished its MFA
    "token_required": _USER_MUST_ACT_AT_BELVO,  # 428: the bank wants an MFA token
    "session_expired": _USER_MUST_ACT_AT_BELVO,  # the MFA session timed out
    # The bank allows one session per login, and the person holds it (on the
    # bank's site or another provider's login): wait for it to close.
    "too_many_sessions": ErrorRule("rate_limit", True, failover_helps=False, blame="person"),
    # The bank, as Belvo reaches it, is down or too slow.
    "institution_down": _INSTITUTION_DOWN,
    "institution_unavailable": _INSTITUTION_DOWN,
    "request_timeout": _INSTITUTION_DOWN,  # 408: the bank took too long
    # Belvo no longer serves this bank, for good; another provider may.
    "institution_inactive": ErrorRule(
        "provider_down", False, failover_helps=True, blame="provider"
    ),
    # Belvo itself.
    "unexpected_error": _BELVO_DOWN,  # 500: Belvo advises up to 3 retries
    "service_unavailable": _BELVO_DOWN,  # 503
    "too_many_requests": _THROTTLED,  # 429
    "throttled": _THROTTLED,  # 429, the API's throttle
    # Our secret id / password, not the person's.
    "authentication_failed": _OUR_CREDENTIALS,  # 401 Invalid Secret Keys
    "not_authenticated": _OUR_CREDENTIALS,
    "unauthorized": _OUR_CREDENTIALS,
    "permission_denied": _OUR_CREDENTIALS,  # 403
    # The request: fields, resources, operations.
    "validation_error": _BAD_REQUEST,
    "required": _BAD_REQUEST,
    "invalid": _BAD_REQUEST,
    "null": _BAD_REQUEST,
    "blank": _BAD_REQUEST,
    "invalid_choice": _BAD_REQUEST,
    "max_length": _BAD_REQUEST,
    "min_length": _BAD_REQUEST,
    "does_not_exist": _BAD_REQUEST,
    "not_found": _BAD_REQUEST,  # 404
    "method_not_allowed": ErrorRule(
        "validation", False, failover_helps=True, blame="syncyard"
    ),  # 405: our adapter's bug
    # The institution cannot do this at Belvo; another provider may.
    "unsupported_operation": ErrorRule("validation", False, failover_helps=True, blame="provider"),
}

# Used only when the body carries no code Belvo documents.
BELVO_HTTP_STATUSES: Mapping[int, ErrorRule] = {
    400: _BAD_REQUEST,
    401: _OUR_CREDENTIALS,
    403: _OUR_CREDENTIALS,
    404: _BAD_REQUEST,
    405: BELVO_ERRORS["method_not_allowed"],
    408: _INSTITUTION_DOWN,
    # Another operation holds the resource (a link being created or refreshed):
    # busy, not failing; a link elsewhere can answer now.
    409: ErrorRule("unknown", True, failover_helps=True, blame="caller"),
    428: _USER_MUST_ACT_AT_BELVO,
    429: _THROTTLED,
    500: _BELVO_DOWN,
    502: _BELVO_DOWN,
    503: _BELVO_DOWN,
    504: _BELVO_DOWN,
}

# A link's status and the documented error that stands for it; `valid` reads on.
LINK_STATUS_CODES: Mapping[str, str] = {
    "invalid": "invalid_link",
    "unconfirmed": "unconfirmed_link",
    "token_required": "token_required",
}


class BelvoErrorBody(msgspec.Struct, frozen=True):
    code: str | None = None
    message: str = ""
    request_id: str | None = None


def _first(body: bytes) -> BelvoErrorBody | None:
    try:
        parsed: list[BelvoErrorBody] | BelvoErrorBody = msgspec.json.decode(
            body, type=list[BelvoErrorBody] | BelvoErrorBody
        )
    except msgspec.DecodeError:
        return None
    if isinstance(parsed, list):
        return parsed[0] if parsed else None
    return parsed


def belvo_error(
    http_status: int,
    body: bytes,
    *,
    provider: str = "belvo",
    retry_after_s: float | None = None,
    secrets: tuple[str, ...] = (),
    endpoint: str = "belvo",
) -> ProviderCallError:
    """Classify a Belvo error reply by its first error's code, else by its HTTP status."""
    err = _first(body)
    rule = BELVO_ERRORS.get(err.code or "") if err is not None else None
    if err is None and http_status not in BELVO_HTTP_STATUSES:
        reply = HttpReply(status=http_status, body=body, retry_after_s=retry_after_s)
        return error_without_body(provider, endpoint, reply)
    rule = rule or BELVO_HTTP_STATUSES.get(http_status) or UNKNOWN_RULE
    code = (err.code if err is not None else None) or f"http_{http_status}"
    message = f"{endpoint}: {(err.message if err is not None else '') or code}"
    if err is not None and err.request_id:
        message += f" (request_id {err.request_id})"
    return rule.error(
        provider,
        code,
        scrub(message, *secrets),
        http_status=http_status,
        retry_after_s=retry_after_s,
    )


def link_status_error(
    status: str, *, provider: str = "belvo", endpoint: str = "belvo"
) -> ProviderCallError | None:
    """The error a link's status stands for, or None if reads may go on."""
    code = LINK_STATUS_CODES.get(status)
    if code is None:
        return None
    message = f"{endpoint}: link status is {status}"
    rule = BELVO_ERRORS[code]
    return rule.error(provider, code, message, http_status=200)

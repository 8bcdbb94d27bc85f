"""MX's failures in our taxonomy: HTTP statuses and member connection statuses.

MX error bodies carry no code, only `{"error": {"message", "status"}}`, so
the HTTP status is the code. A member whose bank login broke is not an HTTP
error at all: reads keep serving stale data and the member's
`connection_status` says what the person must do.

Sources: the MX Platform API reference, "Errors" (the statuses MX answers:
400, 401, 403, 404, 405, 406, 409, 422, 429, 500, 503; 502 and 504 are its
gateways') and "Connection statuses" (docs.mx.com/api-reference/platform-api/
reference/connection-statuses, read 2026-12), and the vendored OpenAPI
document (tests/specs/mx), whose member bodies carry `connection_status`.
tests/unit/test_documented_error_codes.py lists every code this table answers for.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from services.providers.base import ProviderCallError
from services.providers.http import (
    ErrorRule,
    HttpReply,
    error_without_body,
    scrub,
    status_fallback,
)

_MX_DOWN = ErrorRule("provider_down", True, failover_helps=True, blame="provider")
# Our client id and API key, or what our client may do at MX: MX's alone, so a
# link at another provider serves; relinking cannot fix it, nor can a retry.
_OUR_ACCOUNT_AT_MX = ErrorRule("auth", False, failover_helps=True, blame="provider")
# A request our MX adapter shaped wrong: our bug, not another adapter's.
_OUR_BAD_REQUEST = ErrorRule("validation", False, failover_helps=True, blame="syncyard")
_BAD_INPUT = ErrorRule("validation", False, failover_helps=False, blame="caller")

MX_HTTP_STATUSES: Mapping[int, tuple[str, ErrorRule]] = {
    400: ("BAD_REQUEST", _BAD_INPUT),
    401: ("UNAUTHORIZED", _OUR_ACCOUNT_AT_MX),
    403: ("FORBIDDEN", _OUR_ACCOUNT_AT_MX),
    # A guid MX does not know: the caller's, as unknown on a retry.
    404: ("NOT_FOUND", _BAD_INPUT),
    405: ("METHOD_NOT_ALLOWED", _OUR_BAD_REQUEST),
    406: ("NOT_ACCEPTABLE", _OUR_BAD_REQUEST),
    # Another aggregation is already running on the member: come back shortly,
    # or read a link elsewhere now. Busy, not failing: no count against MX.
    409: ("CONFLICT", ErrorRule("rate_limit", True, failover_helps=True, blame="caller")),
    422: ("UNPROCESSABLE_ENTITY", _BAD_INPUT),
    429: ("TOO_MANY_REQUESTS", ErrorRule("rate_limit", True, failover_helps=True)),
    500: ("INTERNAL_SERVER_ERROR", _MX_DOWN),
    502: ("BAD_GATEWAY", _MX_DOWN),
    # MX documents 503 as "the platform is being updated": MX's maintenance,
    # not the bank's, so another provider serves meanwhile.
    503: (
        "SERVICE_UNAVAILABLE",
        ErrorRule("maintenance", True, failover_helps=True, blame="provider"),
    ),
    504: ("GATEWAY_TIMEOUT", _MX_DOWN),
}

# The person's login or consent at MX: only they renew it, and a link at
# another provider holds its own.
_RELINK = ErrorRule("auth", False, reauth_required=True, failover_helps=True, blame="person")
# The person's standing at the bank itself: every provider's login meets it.
_ACT_AT_BANK = ErrorRule("auth", False, reauth_required=True, failover_helps=False, blame="person")
# The bank is not answering: every provider waits as MX does.
_INSTITUTION_DOWN = ErrorRule("provider_down", True, failover_helps=False, blame="institution")
# MX's own aggregation at this bank keeps failing: another provider's may not.
_MX_AGGREGATION_FAILING = ErrorRule("provider_down", True, failover_helps=True, blame="provider")

# The documented statuses that mean all is well, or on its way: reads go on.
MX_HEALTHY_CONNECTION_STATUSES = frozenset(
    {"CREATED", "CONNECTED", "RECONNECTED", "UPDATED", "IMPORTED", "RESUMED"}
)

# Only these stop a read (every other documented status is in the set above).
MX_CONNECTION_STATUSES: Mapping[str, ErrorRule] = {
    "CHALLENGED": _RELINK,  # MFA to answer
    "DENIED": _RELINK,  # the credentials MX holds were refused
    "EXPIRED": _RELINK,  # an MFA answer or OAuth consent timed out
    "IMPAIRED": _RELINK,  # credentials or consent missing
    "PREVENTED": _RELINK,  # MX stopped after repeated bad credentials
    "REJECTED": _RELINK,  # MFA answer refused
    "IMPEDED": _ACT_AT_BANK,  # the bank wants something done on its site
    "LOCKED": _ACT_AT_BANK,  # the bank locked the login
    "DELAYED": _INSTITUTION_DOWN,  # the bank is slow to answer
    "DISCONNECTED": _INSTITUTION_DOWN,  # the bank did not answer
    "DEGRADED": _MX_AGGREGATION_FAILING,
    "FAILED": _MX_AGGREGATION_FAILING,
    # The institution left MX, for good; a link at another provider can still serve it.
    "DISCONTINUED": ErrorRule("provider_down", False, failover_helps=True, blame="provider"),
    # The account is closed at the bank: no provider can read it.
    "CLOSED": ErrorRule("validation", False, failover_helps=False, blame="person"),
    # Aggregation turned off for this member at MX: MX's, not another provider's.
    "DISABLED": ErrorRule("validation", False, failover_helps=True, blame="caller"),
}


class _MxErrorDetail(msgspec.Struct, frozen=True):
    message: str = ""
    status: int | None = None


class _MxErrorBody(msgspec.Struct, frozen=True):
    error: _MxErrorDetail | str


def mx_error(
    http_status: int,
    body: bytes,
    *,
    provider: str = "mx",
    retry_after_s: float | None = None,
    secrets: tuple[str, ...] = (),
    endpoint: str = "mx",
) -> ProviderCallError:
    """Classify an MX error reply by its status; the body only lends its message.

    MX sends no error codes, so a status it documents is classified even when a
    gateway replaced the body.
    """
    try:
        parsed = msgspec.json.decode(body, type=_MxErrorBody)
    except msgspec.DecodeError:
        if http_status not in MX_HTTP_STATUSES:
            reply = HttpReply(status=http_status, body=body, retry_after_s=retry_after_s)
            return error_without_body(provider, endpoint, reply)
        message = ""
    else:
        # Older MX APIs send `"error": "message"`; the platform API nests an object.
        message = parsed.error if isinstance(parsed.error, str) else parsed.error.message
    code, rule = MX_HTTP_STATUSES.get(http_status) or status_fallback(http_status)
    return rule.error(
        provider,
        code,
        scrub(f"{endpoint}: {message or code}", *secrets),
        http_status=http_status,
        retry_after_s=retry_after_s,
    )


def connection_status_error(status: str, *, provider: str = "mx") -> ProviderCallError | None:
    """The error a member's connection status stands for, or None if reads may go on."""
    rule = MX_CONNECTION_STATUSES.get(status.upper())
    if rule is None:
        return None
    code = status.upper()
    return rule.error(provider, code, f"member connection status is {code}", http_status=200)

"""MX's failures in our taxonomy: HTTP statuses and member connection statuses.

MX error bodies carry no code, only `{"error": {"message", "status"}}`, so
the HTTP status is the code. A member whose bank login broke is not an HTTP
error at all: reads keep serving stale data and the member's
`connection_status` says what the person must do.
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

MX_HTTP_STATUSES: Mapping[int, tuple[str, ErrorRule]] = {
    400: ("BAD_REQUEST", ErrorRule("validation", False)),
    # Our client id or API key, not the person's login: relinking cannot fix it.
    401: ("UNAUTHORIZED", ErrorRule("auth", False)),
    403: ("FORBIDDEN", ErrorRule("auth", False)),
    404: ("NOT_FOUND", ErrorRule("validation", False)),
    405: ("METHOD_NOT_ALLOWED", ErrorRule("validation", False)),
    406: ("NOT_ACCEPTABLE", ErrorRule("validation", False)),
    # Another aggregation is already running on the member: come back shortly.
    409: ("CONFLICT", ErrorRule("rate_limit", True)),
    422: ("UNPROCESSABLE_ENTITY", ErrorRule("validation", False)),
    429: ("TOO_MANY_REQUESTS", ErrorRule("rate_limit", True)),
    500: ("INTERNAL_SERVER_ERROR", ErrorRule("provider_down", True)),
    502: ("BAD_GATEWAY", ErrorRule("provider_down", True)),
    # MX documents 503 as "the platform is being updated".
    503: ("SERVICE_UNAVAILABLE", ErrorRule("maintenance", True)),
    504: ("GATEWAY_TIMEOUT", ErrorRule("provider_down", True)),
}

_RELINK = ErrorRule("auth", False, reauth_required=True)
_INSTITUTION_TROUBLE = ErrorRule("provider_down", True)
_GONE = ErrorRule("validation", False)

# Statuses that mean all is well (CONNECTED, CREATED, UPDATED, RESUMED, ...) are
# absent on purpose: only these stop a read.
MX_CONNECTION_STATUSES: Mapping[str, ErrorRule] = {
    "CHALLENGED": _RELINK,
    "DENIED": _RELINK,
    "EXPIRED": _RELINK,
    "IMPAIRED": _RELINK,
    "IMPEDED": _RELINK,
    "LOCKED": _RELINK,
    "PREVENTED": _RELINK,
    "REJECTED": _RELINK,
    "DEGRADED": _INSTITUTION_TROUBLE,
    "DELAYED": _INSTITUTION_TROUBLE,
    "DISCONNECTED": _INSTITUTION_TROUBLE,
    "FAILED": _INSTITUTION_TROUBLE,
    # The institution left MX; a link at another provider can still serve it.
    "DISCONTINUED": _INSTITUTION_TROUBLE,
    "CLOSED": _GONE,
    "DISABLED": _GONE,
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

"""Plaid's error bodies in our taxonomy, by a table of error codes.

Plaid answers `{error_type, error_code, error_message, display_message,
request_id}`; the code decides, the type is the fallback for codes Plaid
adds later, and the HTTP status only when the body is not Plaid's.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from services.providers.base import ProviderCallError
from services.providers.http import UNKNOWN_RULE, ErrorRule, HttpReply, error_without_body, scrub

_RATE_LIMITED = ErrorRule("rate_limit", True)
# The bank behind Plaid, not Plaid: its breaker at Plaid, not Plaid-wide.
_INSTITUTION_DOWN = ErrorRule("provider_down", True, blame="institution")
_USER_MUST_RELINK = ErrorRule("auth", False, reauth_required=True)
_BAD_REQUEST = ErrorRule("validation", False)
# Not a failure of Plaid, but the answer is "ask again later": retrying helps,
# and the caller can tell them apart by code.
_TRY_AGAIN_LATER = ErrorRule("unknown", True)

PLAID_ERROR_CODES: Mapping[str, ErrorRule] = {
    "RATE_LIMIT_EXCEEDED": _RATE_LIMITED,
    "ACCOUNTS_LIMIT": _RATE_LIMITED,
    "ACCOUNTS_BALANCE_GET_LIMIT": _RATE_LIMITED,
    "ADDITION_LIMIT": _RATE_LIMITED,
    "AUTH_LIMIT": _RATE_LIMITED,
    "BALANCE_LIMIT": _RATE_LIMITED,
    "IDENTITY_LIMIT": _RATE_LIMITED,
    "INSTITUTION_RATE_LIMIT": _RATE_LIMITED,
    "ITEM_GET_LIMIT": _RATE_LIMITED,
    "RATE_LIMIT": _RATE_LIMITED,
    "TRANSACTIONS_LIMIT": _RATE_LIMITED,
    "TRANSACTIONS_SYNC_LIMIT": _RATE_LIMITED,
    "INSTITUTION_DOWN": _INSTITUTION_DOWN,
    "INSTITUTION_NOT_RESPONDING": _INSTITUTION_DOWN,
    "INSTITUTION_NOT_AVAILABLE": _INSTITUTION_DOWN,
    # Permanent at Plaid, but a link at another provider can still serve it.
    "INSTITUTION_NO_LONGER_SUPPORTED": _INSTITUTION_DOWN,
    "INTERNAL_SERVER_ERROR": ErrorRule("provider_down", True),
    "PLANNED_MAINTENANCE": ErrorRule("maintenance", True),
    "ITEM_LOGIN_REQUIRED": _USER_MUST_RELINK,
    "ITEM_LOCKED": _USER_MUST_RELINK,
    "ITEM_NOT_FOUND": _USER_MUST_RELINK,
    "INVALID_ACCESS_TOKEN": _USER_MUST_RELINK,
    "INVALID_REQUEST": _BAD_REQUEST,
    "INVALID_INPUT": _BAD_REQUEST,
    "INVALID_FIELD": _BAD_REQUEST,
    "MISSING_FIELDS": _BAD_REQUEST,
    "UNKNOWN_FIELDS": _BAD_REQUEST,
    "INVALID_API_KEYS": _BAD_REQUEST,
    # Link flow: a public token used twice or expired, a link token or
    # institution id Plaid does not know. The flow must start over.
    "INVALID_PUBLIC_TOKEN": _BAD_REQUEST,
    "INVALID_LINK_TOKEN": _BAD_REQUEST,
    "INVALID_INSTITUTION": _BAD_REQUEST,
    # Plaid asks for the whole update to be paged again from its first cursor.
    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": _TRY_AGAIN_LATER,
    "PRODUCT_NOT_READY": _TRY_AGAIN_LATER,
}

# Used only when the code is not in the table: these error types are uniform
# enough that a code Plaid adds later still means the same thing.
PLAID_ERROR_TYPES: Mapping[str, ErrorRule] = {
    "RATE_LIMIT_EXCEEDED": _RATE_LIMITED,
    "INVALID_REQUEST": _BAD_REQUEST,
    "INVALID_INPUT": _BAD_REQUEST,
}


class PlaidErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error_type: str
    error_code: str
    error_message: str = ""
    display_message: str | None = None
    request_id: str | None = None


def plaid_error(
    http_status: int,
    body: bytes,
    *,
    provider: str = "plaid",
    retry_after_s: float | None = None,
    secrets: tuple[str, ...] = (),
    endpoint: str = "plaid",
) -> ProviderCallError:
    """Classify Plaid's error body (or, failing that, its HTTP status)."""
    try:
        err = msgspec.json.decode(body, type=PlaidErrorBody)
    except msgspec.DecodeError:
        reply = HttpReply(status=http_status, body=body, retry_after_s=retry_after_s)
        return error_without_body(provider, endpoint, reply)
    rule = PLAID_ERROR_CODES.get(err.error_code) or PLAID_ERROR_TYPES.get(err.error_type)
    rule = rule or UNKNOWN_RULE
    message = f"{err.error_type}: {err.error_message or err.error_code}"
    if err.request_id:
        message += f" (request_id {err.request_id})"
    return rule.error(
        provider,
        err.error_code,
        scrub(message, *secrets),
        http_status=http_status,
        retry_after_s=retry_after_s,
    )

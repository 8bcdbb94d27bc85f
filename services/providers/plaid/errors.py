"""Plaid's error bodies in our taxonomy, by a table of error codes.

Plaid answers `{error_type, error_code, error_message, display_message,
request_id}`; the code decides, the type is the fallback for codes Plaid
adds later, and the HTTP status only when the body is not Plaid's.

Sources, one page per `error_type` under https://plaid.com/docs/errors/
(read 2026-12): item/ (ITEM_ERROR), institution/ (INSTITUTION_ERROR), api/
(API_ERROR), rate-limit-exceeded/ (RATE_LIMIT_EXCEEDED), invalid-request/
(INVALID_REQUEST), invalid-input/ (INVALID_INPUT), invalid-result/
(INVALID_RESULT), oauth/ (OAUTH_ERROR), transactions/ (TRANSACTIONS_ERROR),
recaptcha/ (RECAPTCHA_ERROR); the types themselves from `PlaidErrorType` in
Plaid's OpenAPI document (plaid/plaid-openapi, 2020-09-14.yml). The pages of
products syncyard never calls (Assets, Payment Initiation, Transfer, Income,
Check, Signal, Virtual Accounts, Partner, Sandbox) are left out: their codes
cannot answer our calls. tests/unit/test_documented_error_codes.py lists every
code this table answers for.

Each row judges three things (see `ErrorRule`) and whose failure it is. Plaid's
own trouble and our client's standing at Plaid (keys, quota, enabled products
and institutions) are Plaid's alone: a link at another provider can serve. The
bank's own outage (INSTITUTION_ERROR) reaches every provider: only time helps.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from services.providers.base import ProviderCallError
from services.providers.http import UNKNOWN_RULE, ErrorRule, HttpReply, error_without_body, scrub

# Our quota at Plaid: Plaid's alone, and it lifts with time.
_RATE_LIMITED = ErrorRule("rate_limit", True, failover_helps=True, blame="provider")
# The bank behind Plaid is down or not answering: every provider reaching it
# waits as Plaid does, so only trying again later helps.
_INSTITUTION_DOWN = ErrorRule("provider_down", True, failover_helps=False, blame="institution")
_PLAID_DOWN = ErrorRule("provider_down", True, failover_helps=True, blame="provider")
# Our client's standing at Plaid (keys, environment, enabled products and
# institutions): nothing another provider needs, and no retry changes it.
_OUR_ACCOUNT_AT_PLAID = ErrorRule("auth", False, failover_helps=True, blame="provider")
# What Plaid cannot do for this item or bank, where another provider may.
_NOT_AT_PLAID = ErrorRule("validation", False, failover_helps=True, blame="provider")
# The person's login or consent at Plaid: only they can renew it, and the link
# at another provider holds a login and consent of its own.
_USER_MUST_RELINK = ErrorRule(
    "auth", False, reauth_required=True, failover_helps=True, blame="person"
)
# The person's standing at the bank itself (locked, a password to reset, an
# account to set up): every provider's login to that bank meets it.
_USER_MUST_ACT_AT_BANK = ErrorRule(
    "auth", False, reauth_required=True, failover_helps=False, blame="person"
)
# What the person typed into Link: they try again in Link.
_USER_IN_LINK = ErrorRule("auth", False, reauth_required=True, blame="person")
# A value the caller gave (an account, institution, token or cursor Plaid does
# not know): as wrong on a retry, and the caller's to fix.
_BAD_INPUT = ErrorRule("validation", False, failover_helps=False, blame="caller")
# A request our Plaid adapter shaped wrong: our bug, which another provider's
# adapter does not share.
_OUR_BAD_REQUEST = ErrorRule("validation", False, failover_helps=True, blame="syncyard")
# Not a failure of anyone's: the call came while Plaid was still preparing the
# item, or while it changed. Ask again here; it never counts against health.
_TRY_AGAIN_LATER = ErrorRule("unknown", True, failover_helps=True, blame="caller")

PLAID_ERROR_CODES: Mapping[str, ErrorRule] = {
    # RATE_LIMIT_EXCEEDED
    "RATE_LIMIT_EXCEEDED": _RATE_LIMITED,
    "ACCOUNTS_LIMIT": _RATE_LIMITED,
    "ACCOUNTS_BALANCE_GET_LIMIT": _RATE_LIMITED,
    "AUTH_LIMIT": _RATE_LIMITED,
    "BALANCE_LIMIT": _RATE_LIMITED,
    "IDENTITY_LIMIT": _RATE_LIMITED,
    "INSTITUTIONS_GET_LIMIT": _RATE_LIMITED,
    "INSTITUTIONS_GET_BY_ID_LIMIT": _RATE_LIMITED,
    "INVESTMENT_HOLDINGS_GET_LIMIT": _RATE_LIMITED,
    "INVESTMENT_TRANSACTIONS_LIMIT": _RATE_LIMITED,
    "ITEM_GET_LIMIT": _RATE_LIMITED,
    "RATE_LIMIT": _RATE_LIMITED,
    "TRANSACTIONS_LIMIT": _RATE_LIMITED,
    "TRANSACTIONS_SYNC_LIMIT": _RATE_LIMITED,
    # The bank throttles Plaid's traffic to it: Plaid at that bank, not the bank
    # everywhere, so another provider's connection can still serve.
    "INSTITUTION_RATE_LIMIT": ErrorRule(
        "rate_limit", True, failover_helps=True, blame="institution"
    ),
    # Items created beyond our plan's allowance: a quota time does not lift.
    "ADDITION_LIMIT": ErrorRule("rate_limit", False, failover_helps=True, blame="provider"),
    # API_ERROR: Plaid itself.
    "INTERNAL_SERVER_ERROR": _PLAID_DOWN,
    # Plaid's own planned maintenance, not the bank's.
    "PLANNED_MAINTENANCE": ErrorRule("maintenance", True, failover_helps=True, blame="provider"),
    # INSTITUTION_ERROR
    "INSTITUTION_DOWN": _INSTITUTION_DOWN,
    "INSTITUTION_NOT_RESPONDING": _INSTITUTION_DOWN,
    "INSTITUTION_NOT_AVAILABLE": _INSTITUTION_DOWN,
    # Plaid's decision, for good: retrying at Plaid never helps, another provider may.
    "INSTITUTION_NO_LONGER_SUPPORTED": ErrorRule(
        "provider_down", False, failover_helps=True, blame="provider"
    ),
    "INSTITUTION_NOT_ENABLED_IN_ENVIRONMENT": _OUR_ACCOUNT_AT_PLAID,
    "INSTITUTION_REGISTRATION_REQUIRED": _OUR_ACCOUNT_AT_PLAID,
    "UNAUTHORIZED_INSTITUTION": _OUR_ACCOUNT_AT_PLAID,
    # Plaid's id for the bank is not one it knows; another provider has its own id.
    "INSTITUTION_NOT_FOUND": ErrorRule("validation", False, failover_helps=True, blame="caller"),
    # ITEM_ERROR
    "ITEM_LOGIN_REQUIRED": _USER_MUST_RELINK,
    "ACCESS_NOT_GRANTED": _USER_MUST_RELINK,
    "NO_ACCOUNTS": _USER_MUST_RELINK,  # none shared with Plaid, or all closed
    "ITEM_NOT_FOUND": _USER_MUST_RELINK,  # the item is gone at Plaid
    "ITEM_CONCURRENTLY_DELETED": _USER_MUST_RELINK,
    "ITEM_LOCKED": _USER_MUST_ACT_AT_BANK,
    "PASSWORD_RESET_REQUIRED": _USER_MUST_ACT_AT_BANK,
    "USER_SETUP_REQUIRED": _USER_MUST_ACT_AT_BANK,
    "INVALID_CREDENTIALS": _USER_IN_LINK,
    "INSUFFICIENT_CREDENTIALS": _USER_IN_LINK,
    "INVALID_MFA": _USER_IN_LINK,
    "INVALID_OTP": _USER_IN_LINK,
    "INVALID_PHONE_NUMBER": _USER_IN_LINK,
    "INVALID_SEND_METHOD": _USER_IN_LINK,
    "INVALID_UPDATED_USERNAME": _USER_IN_LINK,
    "INSTANT_MATCH_FAILED": _USER_IN_LINK,
    "USER_INPUT_TIMEOUT": _USER_IN_LINK,
    "ITEM_NOT_SUPPORTED": _NOT_AT_PLAID,
    "MFA_NOT_SUPPORTED": _NOT_AT_PLAID,
    "PRODUCTS_NOT_SUPPORTED": _NOT_AT_PLAID,
    "NO_AUTH_ACCOUNTS": _NOT_AT_PLAID,
    "NO_INVESTMENT_ACCOUNTS": _NOT_AT_PLAID,
    "NO_INVESTMENT_AUTH_ACCOUNTS": _NOT_AT_PLAID,
    "NO_LIABILITY_ACCOUNTS": _NOT_AT_PLAID,
    "PRODUCT_NOT_ENABLED": _OUR_ACCOUNT_AT_PLAID,
    "PRODUCT_NOT_READY": _TRY_AGAIN_LATER,
    # Update mode opened for an item that needs nothing.
    "ITEM_NO_ERROR": _BAD_INPUT,
    # TRANSACTIONS_ERROR: the item changed while we paged. Plaid asks for the
    # whole update again from its first cursor: at once, here.
    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": ErrorRule(
        "unknown", True, failover_helps=False, blame="caller", restarts_pagination=True
    ),
    # INVALID_REQUEST: the shape of our request.
    "INVALID_REQUEST": _BAD_INPUT,
    "INCOMPATIBLE_API_VERSION": _OUR_BAD_REQUEST,
    "INVALID_BODY": _OUR_BAD_REQUEST,
    "INVALID_CONFIGURATION": _OUR_BAD_REQUEST,
    "INVALID_HEADERS": _OUR_BAD_REQUEST,
    "MISSING_FIELDS": _OUR_BAD_REQUEST,
    "UNKNOWN_FIELDS": _OUR_BAD_REQUEST,
    "NO_LONGER_AVAILABLE": _OUR_BAD_REQUEST,
    "NOT_FOUND": _OUR_BAD_REQUEST,
    "SANDBOX_ONLY": _OUR_BAD_REQUEST,
    "INVALID_FIELD": _BAD_INPUT,  # a value (an id, a cursor) Plaid refuses
    "INVALID_ACCOUNT_NUMBER": _USER_IN_LINK,
    # INVALID_INPUT
    "INVALID_INPUT": _BAD_INPUT,
    # Our client id and secret: Plaid's alone, so another provider can serve.
    "INVALID_API_KEYS": _OUR_ACCOUNT_AT_PLAID,
    "UNAUTHORIZED_ENVIRONMENT": _OUR_ACCOUNT_AT_PLAID,
    "UNAUTHORIZED_ROUTE_ACCESS": _OUR_ACCOUNT_AT_PLAID,
    "DIRECT_INTEGRATION_NOT_ENABLED": _OUR_ACCOUNT_AT_PLAID,
    "INVALID_PRODUCT": _OUR_ACCOUNT_AT_PLAID,
    # The token we hold is not one Plaid knows (removed by us or by the person
    # at my.plaid.com): relink; the link at another provider is untouched.
    "INVALID_ACCESS_TOKEN": ErrorRule(
        "auth", False, reauth_required=True, failover_helps=True, blame="caller"
    ),
    "USER_PERMISSION_REVOKED": _USER_MUST_RELINK,
    "INVALID_ACCOUNT_ID": _BAD_INPUT,
    "INVALID_AUDIT_COPY_TOKEN": _BAD_INPUT,
    "INVALID_LINK_CUSTOMIZATION": _BAD_INPUT,
    "INVALID_PROCESSOR_TOKEN": _BAD_INPUT,
    "INVALID_STRIPE_ACCOUNT": _BAD_INPUT,
    "INVALID_USER_TOKEN": _BAD_INPUT,
    "INVALID_WEBHOOK_VERIFICATION_KEY_ID": _BAD_INPUT,
    # Link flow: a public token used twice or expired, a link token or
    # institution id Plaid does not know. The flow must start over.
    "INVALID_PUBLIC_TOKEN": _BAD_INPUT,
    "INVALID_LINK_TOKEN": _BAD_INPUT,
    "INVALID_INSTITUTION": _BAD_INPUT,
    "INCORRECT_DEPOSIT_AMOUNTS": _USER_IN_LINK,
    "INCORRECT_DEPOSIT_VERIFICATION": _USER_IN_LINK,
    "TOO_MANY_VERIFICATION_ATTEMPTS": _USER_IN_LINK,
    # INVALID_RESULT
    "PLAID_DIRECT_ITEM_IMPORT_RETURNED_INVALID_MFA": _BAD_INPUT,
    # OAUTH_ERROR: a Link session re-initialised with the wrong state.
    "INCORRECT_OAUTH_NONCE": _BAD_INPUT,
    "INCORRECT_LINK_TOKEN": _BAD_INPUT,
    "OAUTH_STATE_ID_ALREADY_PROCESSED": _BAD_INPUT,
    "OAUTH_STATE_ID_NOT_FOUND": _BAD_INPUT,
    # RECAPTCHA_ERROR: the person, in Link.
    "RECAPTCHA_REQUIRED": _USER_IN_LINK,
    "RECAPTCHA_BAD": _USER_IN_LINK,
}

# Used only when the code is not in the table: these error types are uniform
# enough that a code Plaid adds later still means the same thing. ITEM_ERROR
# and TRANSACTIONS_ERROR are not: a new code of theirs stays `unknown`.
PLAID_ERROR_TYPES: Mapping[str, ErrorRule] = {
    "RATE_LIMIT_EXCEEDED": _RATE_LIMITED,
    "API_ERROR": _PLAID_DOWN,
    "INSTITUTION_ERROR": _INSTITUTION_DOWN,
    "INVALID_REQUEST": _BAD_INPUT,
    "INVALID_INPUT": _BAD_INPUT,
    "INVALID_RESULT": _BAD_INPUT,
    "OAUTH_ERROR": _BAD_INPUT,
    "RECAPTCHA_ERROR": _USER_IN_LINK,
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

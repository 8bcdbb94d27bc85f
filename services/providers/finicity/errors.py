"""Finicity's (Mastercard Open Finance US) failures in our taxonomy, by code.

Finicity answers `{"code", "message"}` (the code a number or a string, some
bodies adding `status` and `user_message`). Two families share the field:
API codes (5 digits, our request or our credentials) and *aggregation status
codes* (3-4 digits, what happened at the bank), which come back as HTTP 500
on a call and also sit in each account's `aggregationStatusCode`. The code
decides; the HTTP status only when the code is not ours to know.

Sources: developer.mastercard.com/open-finance-us documentation (error
codes, aggregation status codes, remediation categories, the incomplete
authentication page for 938/940/971), docs.finicity.com/api-errors/ (10005,
10023, 110039, 325/5006, 18001), docs.finicity.com/aggregation-status-codes/
and support.finicity.com "Error Codes and Aggregation Status Codes" (331,
10106), and the Open Finance OpenAPI examples (10001, 10005, 10010,
10022-10026, 14001, 14020, 24302, 38007).
tests/unit/test_documented_error_codes.py lists every code this table answers for.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from services.providers.base import ProviderCallError
from services.providers.http import UNKNOWN_RULE, ErrorRule, HttpReply, error_without_body, scrub

# Our partner credentials are Finicity's alone: another provider does not need them.
_OUR_CREDENTIALS = ErrorRule("auth", False, failover_helps=True, blame="provider")
_BAD_REQUEST = ErrorRule("validation", False, failover_helps=False, blame="caller")
# A request our Finicity adapter shaped wrong (a username outside its policy).
_OUR_BAD_REQUEST = ErrorRule("validation", False, failover_helps=True, blame="syncyard")
# The person must act through Data Connect Fix: an MFA answer, a consent or an
# OAuth token held at Finicity. A link at another provider holds its own.
_USER_MUST_FIX_AT_FINICITY = ErrorRule(
    "auth", False, reauth_required=True, failover_helps=True, blame="person"
)
# The person must act at the bank itself (new credentials, a password to
# change, a prompt on the bank's site): every provider's login meets it.
_USER_MUST_ACT_AT_BANK = ErrorRule(
    "auth", False, reauth_required=True, failover_helps=False, blame="person"
)
# Finicity's own connection to the bank is failing: another provider's may not.
_CONNECTION_DOWN = ErrorRule("provider_down", True, failover_helps=True, blame="provider")
# The bank itself is not answering: every provider waits as Finicity does.
_INSTITUTION_DOWN = ErrorRule("provider_down", True, failover_helps=False, blame="institution")
# Busy at Finicity, not broken: a link elsewhere can answer now, and the same
# call succeeds shortly. No count against Finicity's health.
_NOT_READY = ErrorRule("unknown", True, failover_helps=True, blame="caller")

FINICITY_ERRORS: Mapping[str, ErrorRule] = {
    # API codes: our partner credentials or app token.
    "10001": _OUR_CREDENTIALS,  # invalid partner credentials
    "10021": _OUR_CREDENTIALS,  # not authorized
    "10022": _OUR_CREDENTIALS,  # invalid Finicity-App-Token
    "10023": _OUR_CREDENTIALS,  # expired Finicity-App-Token (refreshed once first)
    "10024": _OUR_CREDENTIALS,  # missing Finicity-App-Token
    "10026": _OUR_CREDENTIALS,  # missing Finicity-App-Key
    "12401": _OUR_CREDENTIALS,  # partner not found
    "24302": _OUR_CREDENTIALS,  # bad credentials
    # API codes: the request itself.
    "1000": _BAD_REQUEST,  # field must be a number
    "10005": _BAD_REQUEST,  # missing parameter
    "10010": _BAD_REQUEST,  # invalid field / customer not this partner's
    "10100": _BAD_REQUEST,  # invalid field format
    "10106": _BAD_REQUEST,  # invalid account type
    "14001": _BAD_REQUEST,  # resource or customer not found
    "14020": _BAD_REQUEST,  # bad request
    "110039": _OUR_BAD_REQUEST,  # username not as per the policy
    # The login this link names is gone at Finicity: only relinking brings it back.
    "38007": _USER_MUST_FIX_AT_FINICITY,  # no accounts for institutionLoginId
    "331": _USER_MUST_FIX_AT_FINICITY,  # MFA session expired
    # Busy, not broken: the same call succeeds shortly.
    "325": _NOT_READY,  # account is being aggregated
    "5006": _NOT_READY,  # account is being aggregated
    "18001": _NOT_READY,  # a report is being generated
    # Aggregation status codes the person fixes through Data Connect Fix.
    "106": _USER_MUST_FIX_AT_FINICITY,  # additional information required
    "169": _USER_MUST_FIX_AT_FINICITY,  # duplicate account
    "185": _USER_MUST_FIX_AT_FINICITY,  # MFA challenge
    "187": _USER_MUST_FIX_AT_FINICITY,  # incorrect MFA answers
    "938": _USER_MUST_FIX_AT_FINICITY,  # incomplete authentication
    "940": _USER_MUST_FIX_AT_FINICITY,  # incomplete authentication
    "945": _USER_MUST_FIX_AT_FINICITY,  # OAuth migration, not consented
    "946": _USER_MUST_FIX_AT_FINICITY,  # account not found (maybe closed)
    "947": _USER_MUST_FIX_AT_FINICITY,  # OAuth token expired
    "948": _USER_MUST_FIX_AT_FINICITY,  # OAuth migration, not authenticated
    "949": _USER_MUST_FIX_AT_FINICITY,  # OAuth consent revoked
    "959": _USER_MUST_FIX_AT_FINICITY,  # additional information required
    "961": _USER_MUST_FIX_AT_FINICITY,  # additional information required
    "971": _USER_MUST_FIX_AT_FINICITY,  # incomplete authentication
    "1008": _USER_MUST_FIX_AT_FINICITY,  # unexpected login error, re-authenticate
    # Aggregation status codes the person fixes at the bank.
    "103": _USER_MUST_ACT_AT_BANK,  # invalid credentials (changed at the bank)
    "108": _USER_MUST_ACT_AT_BANK,  # user action required at the institution
    "109": _USER_MUST_ACT_AT_BANK,  # password change required
    # Aggregation status codes: Finicity's connection to the bank is down.
    "101": _CONNECTION_DOWN,
    "104": _CONNECTION_DOWN,
    "105": _CONNECTION_DOWN,
    "124": _CONNECTION_DOWN,
    "171": _CONNECTION_DOWN,
    "179": _CONNECTION_DOWN,
    "194": _CONNECTION_DOWN,
    "197": _CONNECTION_DOWN,
    "204": _CONNECTION_DOWN,
    "417": _CONNECTION_DOWN,
    "500": _CONNECTION_DOWN,
    "525": _CONNECTION_DOWN,
    "905": _CONNECTION_DOWN,
    "906": _CONNECTION_DOWN,
    "907": _CONNECTION_DOWN,
    "2040": _CONNECTION_DOWN,  # unexpected login error, retry later
    # The bank itself is not answering, or too slowly.
    "102": _INSTITUTION_DOWN,  # institution not responding
    "1408": _INSTITUTION_DOWN,  # session timed out at the bank
    # Finicity no longer connects to this bank, for good; another provider still may.
    "920": ErrorRule("provider_down", False, failover_helps=True, blame="provider"),
    # The bank's own planned maintenance: every provider waits it out.
    "320": ErrorRule("maintenance", True, failover_helps=False, blame="institution"),
}

# Used only when the body carries no code we know.
FINICITY_HTTP_STATUSES: Mapping[int, ErrorRule] = {
    400: _BAD_REQUEST,
    401: _OUR_CREDENTIALS,
    403: _OUR_CREDENTIALS,
    404: _BAD_REQUEST,
    406: _OUR_BAD_REQUEST,
    408: ErrorRule("network", True),
    409: _NOT_READY,
    429: ErrorRule("rate_limit", True, failover_helps=True, blame="provider"),
    500: _CONNECTION_DOWN,
    502: _CONNECTION_DOWN,
    # Finicity's own maintenance, not the bank's.
    503: ErrorRule("maintenance", True, failover_helps=True, blame="provider"),
    504: _CONNECTION_DOWN,
}


class FinicityErrorBody(msgspec.Struct, frozen=True):
    code: int | str
    message: str = ""
    user_message: str | None = None


def finicity_error(
    http_status: int,
    body: bytes,
    *,
    provider: str = "finicity",
    retry_after_s: float | None = None,
    secrets: tuple[str, ...] = (),
    endpoint: str = "finicity",
) -> ProviderCallError:
    """Classify a Finicity error reply by its code, else by its HTTP status."""
    try:
        err = msgspec.json.decode(body, type=FinicityErrorBody)
    except msgspec.DecodeError:
        rule = FINICITY_HTTP_STATUSES.get(http_status)
        if rule is None:
            reply = HttpReply(status=http_status, body=body, retry_after_s=retry_after_s)
            return error_without_body(provider, endpoint, reply)
        return rule.error(
            provider,
            f"http_{http_status}",
            f"{endpoint}: HTTP {http_status}",
            http_status=http_status,
            retry_after_s=retry_after_s,
        )
    code = str(err.code).strip()
    rule = FINICITY_ERRORS.get(code) or FINICITY_HTTP_STATUSES.get(http_status)
    rule = rule or UNKNOWN_RULE
    return rule.error(
        provider,
        code,
        scrub(f"{endpoint}: {err.message or code}", *secrets),
        http_status=http_status,
        retry_after_s=retry_after_s,
    )


def aggregation_status_error(
    code: int, *, provider: str = "finicity", endpoint: str = "finicity"
) -> ProviderCallError | None:
    """The error an account's `aggregationStatusCode` stands for, or None to read on.

    0 is success; codes we do not know let the read go on, as Finicity keeps
    serving the last data it aggregated.
    """
    rule = FINICITY_ERRORS.get(str(code))
    if code == 0 or rule is None:
        return None
    message = f"{endpoint}: account aggregation status is {code}"
    return rule.error(provider, str(code), message, http_status=200)


def coded_error(
    code: str, message: str, *, provider: str = "finicity", http_status: int = 200
) -> ProviderCallError:
    """An error for a documented code we detect ourselves (a login with no accounts)."""
    rule = FINICITY_ERRORS.get(code) or UNKNOWN_RULE
    return rule.error(provider, code, message, http_status=http_status)

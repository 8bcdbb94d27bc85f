"""Finicity's (Mastercard Open Finance US) failures in our taxonomy, by code.

Finicity answers `{"code", "message"}` (the code a number or a string, some
bodies adding `status` and `user_message`). Two families share the field:
API codes (5 digits, our request or our credentials) and *aggregation status
codes* (3-4 digits, what happened at the bank), which come back as HTTP 500
on a call and also sit in each account's `aggregationStatusCode`. The code
decides; the HTTP status only when the code is not ours to know.

Sources: developer.mastercard.com/open-finance-us documentation (error
codes, aggregation status codes, remediation categories) and the Open
Finance OpenAPI examples (10001, 10005, 10010, 10022-10026, 14001, 14020,
24302, 38007).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from services.providers.base import ProviderCallError
from services.providers.http import UNKNOWN_RULE, ErrorRule, HttpReply, error_without_body, scrub

# Failover follows the type (http.ErrorRule) except where noted: the person's
# bank login and the bank's own maintenance reach every provider alike.
# Our partner credentials are Finicity's alone: another provider does not need them.
_OUR_CREDENTIALS = ErrorRule("auth", False, failover_helps=True)
_BAD_REQUEST = ErrorRule("validation", False)
_USER_MUST_ACT = ErrorRule("auth", False, reauth_required=True)
_CONNECTION_DOWN = ErrorRule("provider_down", True)
# Busy aggregating at Finicity: a link elsewhere can answer now.
_NOT_READY = ErrorRule("unknown", True, failover_helps=True)

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
    "14001": _BAD_REQUEST,  # resource or customer not found
    "14020": _BAD_REQUEST,  # bad request
    # The login this link names is gone: only relinking brings it back.
    "38007": _USER_MUST_ACT,  # no accounts for institutionLoginId
    "331": _USER_MUST_ACT,  # MFA session expired
    # Busy, not broken: the same call succeeds shortly.
    "325": _NOT_READY,  # account is being aggregated
    "5006": _NOT_READY,  # account is being aggregated
    "18001": _NOT_READY,  # a report is being generated
    # Aggregation status codes the person must fix through Data Connect Fix.
    "103": _USER_MUST_ACT,  # invalid credentials
    "106": _USER_MUST_ACT,  # additional information required
    "108": _USER_MUST_ACT,  # user action required at the institution
    "109": _USER_MUST_ACT,  # password change required
    "169": _USER_MUST_ACT,  # duplicate account
    "185": _USER_MUST_ACT,  # MFA challenge
    "187": _USER_MUST_ACT,  # incorrect MFA answers
    "945": _USER_MUST_ACT,  # OAuth migration, not consented
    "946": _USER_MUST_ACT,  # account not found (maybe closed)
    "947": _USER_MUST_ACT,  # OAuth token expired
    "948": _USER_MUST_ACT,  # OAuth migration, not authenticated
    "949": _USER_MUST_ACT,  # OAuth consent revoked
    "959": _USER_MUST_ACT,  # additional information required
    "961": _USER_MUST_ACT,  # additional information required
    "1008": _USER_MUST_ACT,  # unexpected login error, re-authenticate
    # Aggregation status codes: Finicity's connection to the bank is down.
    "101": _CONNECTION_DOWN,
    "102": _CONNECTION_DOWN,  # institution not responding
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
    "1408": _CONNECTION_DOWN,  # session timed out at the bank
    "2040": _CONNECTION_DOWN,  # unexpected login error, retry later
    # Finicity no longer connects to this bank; another provider still may.
    "920": _CONNECTION_DOWN,
    # The bank's own planned maintenance: every provider waits it out.
    "320": ErrorRule("maintenance", True, failover_helps=False),
}

# Used only when the body carries no code we know.
FINICITY_HTTP_STATUSES: Mapping[int, ErrorRule] = {
    400: _BAD_REQUEST,
    401: _OUR_CREDENTIALS,
    403: _OUR_CREDENTIALS,
    404: _BAD_REQUEST,
    406: _BAD_REQUEST,
    408: ErrorRule("network", True),
    409: _NOT_READY,
    429: ErrorRule("rate_limit", True),
    500: _CONNECTION_DOWN,
    502: _CONNECTION_DOWN,
    503: ErrorRule("maintenance", True),
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

"""Every code the providers document is in its table, and every row keeps the principle:
our standing at one provider is that provider's alone, a bank's outage reaches every
provider, and the person's, the caller's and our own errors never count against health.

The lists are data copied from each provider's public error documentation (the URL
above each list); a code missing from its table would fall to `unknown`, not
retryable, and never fail over.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from events.errors import ErrorInfo, counts_against_health
from services.providers.belvo.errors import BELVO_ERRORS, BELVO_HTTP_STATUSES
from services.providers.bitso.errors import BITSO_ERROR_CATEGORIES, BITSO_ERRORS
from services.providers.error_tables import ErrorRow, rows
from services.providers.finicity.errors import FINICITY_ERRORS
from services.providers.http import ErrorRule
from services.providers.mx.errors import (
    MX_CONNECTION_STATUSES,
    MX_HEALTHY_CONNECTION_STATUSES,
    MX_HTTP_STATUSES,
    connection_status_error,
)
from services.providers.plaid.errors import PLAID_ERROR_CODES, PLAID_ERROR_TYPES

pytestmark = pytest.mark.unit

# https://plaid.com/docs/errors/ : one page per error_type; the products syncyard
# never calls (Assets, Payment, Transfer, Income, Check, Signal, ...) left out.
PLAID_DOCUMENTED: dict[str, tuple[str, ...]] = {
    # https://plaid.com/docs/errors/item/
    "ITEM_ERROR": (
        "ACCESS_NOT_GRANTED",
        "INSTANT_MATCH_FAILED",
        "INSUFFICIENT_CREDENTIALS",
        "INVALID_CREDENTIALS",
        "INVALID_MFA",
        "INVALID_OTP",
        "INVALID_PHONE_NUMBER",
        "INVALID_SEND_METHOD",
        "INVALID_UPDATED_USERNAME",
        "ITEM_CONCURRENTLY_DELETED",
        "ITEM_LOCKED",
        "ITEM_LOGIN_REQUIRED",
        "ITEM_NO_ERROR",
        "ITEM_NOT_FOUND",
        "ITEM_NOT_SUPPORTED",
        "MFA_NOT_SUPPORTED",
        "NO_ACCOUNTS",
        "NO_AUTH_ACCOUNTS",
        "NO_INVESTMENT_ACCOUNTS",
        "NO_INVESTMENT_AUTH_ACCOUNTS",
        "NO_LIABILITY_ACCOUNTS",
        "PASSWORD_RESET_REQUIRED",
        "PRODUCT_NOT_ENABLED",
        "PRODUCT_NOT_READY",
        "PRODUCTS_NOT_SUPPORTED",
        "USER_INPUT_TIMEOUT",
        "USER_SETUP_REQUIRED",
    ),
    # https://plaid.com/docs/errors/institution/
    "INSTITUTION_ERROR": (
        "INSTITUTION_DOWN",
        "INSTITUTION_NOT_ENABLED_IN_ENVIRONMENT",
        "INSTITUTION_NOT_FOUND",
        "INSTITUTION_NOT_RESPONDING",
        "INSTITUTION_NOT_AVAILABLE",
        "INSTITUTION_NO_LONGER_SUPPORTED",
        "INSTITUTION_REGISTRATION_REQUIRED",
        "UNAUTHORIZED_INSTITUTION",
    ),
    # https://plaid.com/docs/errors/api/
    "API_ERROR": ("INTERNAL_SERVER_ERROR", "PLANNED_MAINTENANCE"),
    # https://plaid.com/docs/errors/rate-limit-exceeded/
    "RATE_LIMIT_EXCEEDED": (
        "ACCOUNTS_LIMIT",
        "ACCOUNTS_BALANCE_GET_LIMIT",
        "ADDITION_LIMIT",
        "AUTH_LIMIT",
        "BALANCE_LIMIT",
        "IDENTITY_LIMIT",
        "INSTITUTIONS_GET_LIMIT",
        "INSTITUTIONS_GET_BY_ID_LIMIT",
        "INSTITUTION_RATE_LIMIT",
        "INVESTMENT_HOLDINGS_GET_LIMIT",
        "INVESTMENT_TRANSACTIONS_LIMIT",
        "ITEM_GET_LIMIT",
        "RATE_LIMIT",
        "TRANSACTIONS_LIMIT",
        "TRANSACTIONS_SYNC_LIMIT",
    ),
    # https://plaid.com/docs/errors/invalid-request/
    "INVALID_REQUEST": (
        "INCOMPATIBLE_API_VERSION",
        "INVALID_ACCOUNT_NUMBER",
        "INVALID_BODY",
        "INVALID_CONFIGURATION",
        "INVALID_FIELD",
        "INVALID_HEADERS",
        "MISSING_FIELDS",
        "NO_LONGER_AVAILABLE",
        "NOT_FOUND",
        "SANDBOX_ONLY",
        "UNKNOWN_FIELDS",
    ),
    # https://plaid.com/docs/errors/invalid-input/
    "INVALID_INPUT": (
        "DIRECT_INTEGRATION_NOT_ENABLED",
        "INCORRECT_DEPOSIT_AMOUNTS",
        "INCORRECT_DEPOSIT_VERIFICATION",
        "INVALID_ACCESS_TOKEN",
        "INVALID_ACCOUNT_ID",
        "INVALID_API_KEYS",
        "INVALID_AUDIT_COPY_TOKEN",
        "INVALID_INSTITUTION",
        "INVALID_LINK_CUSTOMIZATION",
        "INVALID_LINK_TOKEN",
        "INVALID_PROCESSOR_TOKEN",
        "INVALID_PRODUCT",
        "INVALID_PUBLIC_TOKEN",
        "INVALID_STRIPE_ACCOUNT",
        "INVALID_USER_TOKEN",
        "INVALID_WEBHOOK_VERIFICATION_KEY_ID",
        "TOO_MANY_VERIFICATION_ATTEMPTS",
        "UNAUTHORIZED_ENVIRONMENT",
        "UNAUTHORIZED_ROUTE_ACCESS",
        "USER_PERMISSION_REVOKED",
    ),
    # https://plaid.com/docs/errors/invalid-result/
    "INVALID_RESULT": ("PLAID_DIRECT_ITEM_IMPORT_RETURNED_INVALID_MFA",),
    # https://plaid.com/docs/errors/oauth/
    "OAUTH_ERROR": (
        "INCORRECT_LINK_TOKEN",
        "INCORRECT_OAUTH_NONCE",
        "OAUTH_STATE_ID_ALREADY_PROCESSED",
        "OAUTH_STATE_ID_NOT_FOUND",
    ),
    # https://plaid.com/docs/errors/transactions/
    "TRANSACTIONS_ERROR": ("TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",),
    # https://plaid.com/docs/errors/recaptcha/
    "RECAPTCHA_ERROR": ("RECAPTCHA_BAD", "RECAPTCHA_REQUIRED"),
}

# https://docs.mx.com/api-reference/platform-api/overview/errors (response statuses)
MX_DOCUMENTED_STATUSES = (400, 401, 403, 404, 405, 406, 409, 422, 429, 500, 503)
# https://docs.mx.com/api-reference/platform-api/reference/connection-statuses
MX_DOCUMENTED_CONNECTION_STATUSES = (
    "CREATED",
    "PREVENTED",
    "DENIED",
    "CHALLENGED",
    "REJECTED",
    "LOCKED",
    "CONNECTED",
    "IMPEDED",
    "RECONNECTED",
    "DEGRADED",
    "DISCONNECTED",
    "DISCONTINUED",
    "CLOSED",
    "DELAYED",
    "FAILED",
    "UPDATED",
    "DISABLED",
    "IMPORTED",
    "RESUMED",
    "EXPIRED",
    "IMPAIRED",
)

# https://developer.mastercard.com/open-finance-us/documentation/errors/ (error list,
# aggregation status codes, incomplete authentication: 938, 940, 971),
# https://docs.finicity.com/api-errors/ and https://docs.finicity.com/aggregation-status-codes/,
# https://support.finicity.com/hc/en-us/articles/201750879 (331, 10106)
FINICITY_DOCUMENTED = (
    "10001", "10005", "10010", "10021", "10022", "10023", "10024", "10026", "10106",
    "110039", "12401", "14001", "14020", "18001", "24302", "38007", "325", "331", "5006",
    "102", "103", "106", "108", "109", "169", "185", "187", "320", "938", "940", "945",
    "946", "947", "948", "949", "959", "961", "971", "1008", "920",
)  # fmt: skip

# https://developers.belvo.com/docs/belvo-api-errors
BELVO_DOCUMENTED_CODES = (
    "activation_failed",
    "authentication_failed",
    "institution_down",
    "institution_inactive",
    "institution_unavailable",
    "invalid_link",
    "login_error",
    "not_found",
    "method_not_allowed",
    "request_timeout",
    "session_expired",
    "token_required",
    "too_many_sessions",
    "unconfirmed_link",
    "unexpected_error",
    "unsupported_operation",
    "validation_error",
)
BELVO_DOCUMENTED_STATUSES = (400, 401, 403, 404, 405, 408, 409, 428, 500)

# https://docs.bitso.com/bitso-api/docs/authentication-error-02-http-401 (0201-0216) and
# the other category pages it links (01, 03, 08, 09)
BITSO_DOCUMENTED = (
    "0101",
    *(f"02{n:02d}" for n in range(1, 17)),
    "0303",
    "0304",
    "0320",
    "0801",
    "0802",
    "0901",
)
BITSO_DOCUMENTED_CATEGORIES = ("01", "02", "03", "08", "09")


@pytest.mark.parametrize(
    ("error_type", "code"),
    [(t, c) for t, codes in PLAID_DOCUMENTED.items() for c in codes],
)
def test_every_documented_plaid_code_is_in_its_table(error_type: str, code: str) -> None:
    assert code in PLAID_ERROR_CODES, f"{error_type}/{code} would fall to unknown"


@pytest.mark.parametrize(
    "error_type",
    ["RATE_LIMIT_EXCEEDED", "API_ERROR", "INSTITUTION_ERROR", "INVALID_REQUEST", "INVALID_INPUT"],
)
def test_a_new_plaid_code_of_a_uniform_type_is_still_classified(error_type: str) -> None:
    assert error_type in PLAID_ERROR_TYPES


def test_every_documented_mx_status_is_in_its_table() -> None:
    assert set(MX_DOCUMENTED_STATUSES) <= set(MX_HTTP_STATUSES)


@pytest.mark.parametrize("status", MX_DOCUMENTED_CONNECTION_STATUSES)
def test_every_documented_mx_connection_status_is_judged(status: str) -> None:
    # Either it stops a read with its own row, or it is one of the healthy ones.
    assert (status in MX_CONNECTION_STATUSES) != (status in MX_HEALTHY_CONNECTION_STATUSES)
    assert (connection_status_error(status) is None) == (status in MX_HEALTHY_CONNECTION_STATUSES)


@pytest.mark.parametrize("code", FINICITY_DOCUMENTED)
def test_every_documented_finicity_code_is_in_its_table(code: str) -> None:
    assert code in FINICITY_ERRORS


@pytest.mark.parametrize("code", BELVO_DOCUMENTED_CODES)
def test_every_documented_belvo_code_is_in_its_table(code: str) -> None:
    assert code in BELVO_ERRORS


def test_every_documented_belvo_status_is_in_its_table() -> None:
    assert set(BELVO_DOCUMENTED_STATUSES) <= set(BELVO_HTTP_STATUSES)


@pytest.mark.parametrize("code", BITSO_DOCUMENTED)
def test_every_documented_bitso_code_is_in_its_table(code: str) -> None:
    assert code in BITSO_ERRORS


def test_every_documented_bitso_category_classifies_a_new_code() -> None:
    assert set(BITSO_DOCUMENTED_CATEGORIES) <= set(BITSO_ERROR_CATEGORIES)


def _label(row: ErrorRow) -> str:
    return f"{row.provider}-{row.key}-{row.code}"


ROWS = rows()


@pytest.mark.parametrize("row", [r for r in ROWS if r.blame == "provider"], ids=_label)
def test_a_providers_own_trouble_is_routed_around(row: ErrorRow) -> None:
    # Its outage, its quota on us, our credentials there: another provider has none of it.
    assert row.failover_helps


@pytest.mark.parametrize(
    "row",
    [r for r in ROWS if r.blame == "institution" and r.type != "rate_limit"],
    ids=_label,
)
def test_a_banks_own_outage_waits_instead_of_failing_over(row: ErrorRow) -> None:
    assert not row.failover_helps
    assert row.retryable


@pytest.mark.parametrize(
    "row", [r for r in ROWS if r.blame in ("person", "caller", "syncyard")], ids=_label
)
def test_the_persons_the_callers_and_our_own_errors_never_count_against_health(
    row: ErrorRow,
) -> None:
    error = ErrorInfo(
        code=row.code, message="m", type=row.type, retryable=row.retryable, blame=row.blame
    )
    assert not counts_against_health(error)


# The rows that contradicted the principle before, each fixed.


def test_our_client_keys_at_plaid_are_plaids_problem_alone() -> None:
    keys = PLAID_ERROR_CODES["INVALID_API_KEYS"]
    assert (keys.type, keys.failover_helps, keys.blame) == ("auth", True, "provider")
    assert not keys.reauth_required


@pytest.mark.parametrize("status", [401, 403])
def test_our_client_credentials_at_mx_are_mxs_problem_alone(status: int) -> None:
    _, rule = MX_HTTP_STATUSES[status]
    assert (rule.failover_helps, rule.blame) == (True, "provider")


@pytest.mark.parametrize(
    "code", ["INSTITUTION_DOWN", "INSTITUTION_NOT_RESPONDING", "INSTITUTION_NOT_AVAILABLE"]
)
def test_a_bank_down_at_plaid_is_the_banks_and_no_failover_fixes_it(code: str) -> None:
    rule = PLAID_ERROR_CODES[code]
    assert (rule.retryable, rule.failover_helps, rule.blame) == (True, False, "institution")


@pytest.mark.parametrize(
    ("table", "code"),
    [
        (PLAID_ERROR_CODES, "PLANNED_MAINTENANCE"),
        ({str(s): r for s, (_, r) in MX_HTTP_STATUSES.items()}, "503"),
    ],
)
def test_a_providers_own_maintenance_is_its_own_not_the_banks(
    table: Mapping[str, ErrorRule], code: str
) -> None:
    rule = table[code]
    assert (rule.type, rule.blame, rule.failover_helps) == ("maintenance", "provider", True)


def test_a_sync_walk_the_item_changed_under_is_restarted_by_the_rows_flag() -> None:
    assert PLAID_ERROR_CODES["TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"].restarts_pagination
    assert not any(
        rule.restarts_pagination
        for code, rule in PLAID_ERROR_CODES.items()
        if code != "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"
    )

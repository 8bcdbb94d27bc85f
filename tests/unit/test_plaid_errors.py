"""Plaid's error bodies become the right ErrorInfo, row by row of the table."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from events.errors import ErrorType
from services.providers.http import ErrorRule, parse_retry_after
from services.providers.plaid.errors import (
    PLAID_ERROR_CODES,
    PLAID_ERROR_TYPES,
    plaid_error,
)

pytestmark = pytest.mark.unit

# What a class of error lets the caller do, independent of any one provider.
RETRYABLE_BY_TYPE: dict[ErrorType, bool] = {
    "provider_down": True,
    "rate_limit": True,
    "network": True,
    "maintenance": True,
    "auth": False,
    "validation": False,
}

TOKEN = "access-sandbox-5f3c9e1a-0b7d-4c2e-9a61-d2f0c8b7a4e3"


def plaid_body(error_type: str, error_code: str, message: str = "the request failed") -> bytes:
    return msgspec.json.encode(
        {
            "error_type": error_type,
            "error_code": error_code,
            "error_message": message,
            "display_message": None,
            "request_id": "HNTDNrA8F1shFEW",
            "documentation_url": "https://plaid.com/docs/errors/",
            "suggested_action": None,
        }
    )


def status_for(rule: ErrorRule) -> int:
    return {"rate_limit": 429, "provider_down": 500, "maintenance": 503}.get(rule.type, 400)


@pytest.mark.parametrize(("code", "rule"), sorted(PLAID_ERROR_CODES.items()))
def test_each_plaid_error_code_is_classified_as_its_table_row_says(
    code: str, rule: ErrorRule
) -> None:
    exc = plaid_error(status_for(rule), plaid_body("SOME_ERROR_TYPE", code))

    assert exc.error.code == code
    assert exc.error.type == rule.type
    assert exc.error.retryable is rule.retryable
    assert exc.error.provider == "plaid"
    assert exc.reauth_required is rule.reauth_required
    assert exc.http_status == status_for(rule)


@pytest.mark.parametrize(("error_type", "rule"), sorted(PLAID_ERROR_TYPES.items()))
def test_a_new_code_of_a_known_error_type_falls_back_to_the_type_row(
    error_type: str, rule: ErrorRule
) -> None:
    exc = plaid_error(400, plaid_body(error_type, "A_CODE_PLAID_ADDS_NEXT_YEAR"))

    assert (exc.error.type, exc.error.retryable) == (rule.type, rule.retryable)
    assert exc.error.code == "A_CODE_PLAID_ADDS_NEXT_YEAR"


@pytest.mark.parametrize(
    ("code", "expected_type", "reauth"),
    [
        ("RATE_LIMIT_EXCEEDED", "rate_limit", False),
        ("ACCOUNTS_LIMIT", "rate_limit", False),
        ("TRANSACTIONS_SYNC_LIMIT", "rate_limit", False),
        ("INSTITUTION_DOWN", "provider_down", False),
        ("INSTITUTION_NOT_RESPONDING", "provider_down", False),
        ("INSTITUTION_NOT_AVAILABLE", "provider_down", False),
        ("INSTITUTION_NO_LONGER_SUPPORTED", "provider_down", False),
        ("INTERNAL_SERVER_ERROR", "provider_down", False),
        ("PLANNED_MAINTENANCE", "maintenance", False),
        ("ITEM_LOGIN_REQUIRED", "auth", True),
        ("ITEM_LOCKED", "auth", True),
        ("INVALID_ACCESS_TOKEN", "auth", True),
        ("INVALID_REQUEST", "validation", False),
        ("INVALID_INPUT", "validation", False),
        ("TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION", "unknown", False),
        ("PRODUCT_NOT_READY", "unknown", False),
    ],
)
def test_the_codes_the_orchestrator_relies_on_are_in_the_table(
    code: str, expected_type: str, reauth: bool
) -> None:
    rule = PLAID_ERROR_CODES[code]

    assert rule.type == expected_type
    assert rule.reauth_required is reauth


@pytest.mark.parametrize(
    "code", ["TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION", "PRODUCT_NOT_READY"]
)
def test_come_back_later_answers_are_retryable_though_unclassified(code: str) -> None:
    assert PLAID_ERROR_CODES[code].retryable is True


# Rows whose class passes with time but whose cause does not: Plaid dropped the
# bank for good, or our plan's item allowance is spent. Failover may still help.
PERMANENT_AT_PLAID = {"INSTITUTION_NO_LONGER_SUPPORTED", "ADDITION_LIMIT"}


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        (code, rule)
        for code, rule in sorted(PLAID_ERROR_CODES.items())
        if rule.type in RETRYABLE_BY_TYPE and code not in PERMANENT_AT_PLAID
    ],
)
def test_every_classified_row_is_retryable_exactly_when_its_type_is(
    code: str, rule: ErrorRule
) -> None:
    assert rule.retryable is RETRYABLE_BY_TYPE[rule.type]


@pytest.mark.parametrize("code", sorted(PERMANENT_AT_PLAID))
def test_what_plaid_refuses_for_good_is_not_retried_there_but_fails_over(code: str) -> None:
    rule = PLAID_ERROR_CODES[code]

    assert (rule.retryable, rule.failover_helps, rule.blame) == (False, True, "provider")


def test_an_unknown_code_of_an_unknown_type_is_unknown_and_not_retryable() -> None:
    exc = plaid_error(400, plaid_body("SHINY_NEW_ERROR", "SHINY_NEW_CODE"))

    assert (exc.error.type, exc.error.retryable, exc.reauth_required) == (
        "unknown",
        False,
        False,
    )


def test_a_gateway_page_on_a_5xx_reads_as_provider_down() -> None:
    exc = plaid_error(502, b"<html>Bad Gateway</html>")

    assert (exc.error.code, exc.error.type, exc.error.retryable) == (
        "http_502",
        "provider_down",
        True,
    )


def test_a_non_json_client_error_body_is_an_invalid_response() -> None:
    exc = plaid_error(400, b'{"error_type": "ITEM_ERR')

    assert (exc.error.code, exc.error.type, exc.error.retryable) == (
        "invalid_response",
        "unknown",
        True,
    )


def test_the_retry_after_hint_is_carried_on_a_rate_limit() -> None:
    exc = plaid_error(429, plaid_body("RATE_LIMIT_EXCEEDED", "ACCOUNTS_LIMIT"), retry_after_s=7.0)

    assert exc.retry_after_s == 7.0


def test_a_token_echoed_in_plaid_s_message_is_masked() -> None:
    body = plaid_body("INVALID_INPUT", "INVALID_ACCESS_TOKEN", f"token {TOKEN} is bad")

    exc = plaid_error(400, body, secrets=(TOKEN,))

    assert TOKEN not in str(exc)
    assert "***" in exc.error.message


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("Fri, 31 Jan 2025 12:00:30 GMT", 30.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
    ],
)
def test_retry_after_reads_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    now = datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after(header, now=now) == seconds

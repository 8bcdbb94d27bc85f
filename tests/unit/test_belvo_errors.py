"""Belvo's error bodies, link statuses, cursors and webhooks, row by row."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.providers.base import ProviderCallError, WebhookRejectedError
from services.providers.belvo.errors import (
    BELVO_ERRORS,
    BELVO_HTTP_STATUSES,
    LINK_STATUS_CODES,
    belvo_error,
    link_status_error,
)
from services.providers.belvo.webhooks import verify_belvo_webhook
from services.providers.belvo.wire import Cursor, decode_cursor, encode_cursor, later
from services.providers.http import ErrorRule

pytestmark = pytest.mark.unit

LINK_ID = "30cb4806-6e00-48a4-91c9-ca55968576c8"
SECRET_PASSWORD = "belvo-secret-password-77a1"
WEBHOOK_AUTH = "Bearer 9f2c1b7e4d6a8c0e"

# Belvo's documented status for each code, so the body arrives as it would.
STATUSES = {
    "authentication_failed": 401,
    "not_authenticated": 401,
    "unauthorized": 401,
    "permission_denied": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "token_required": 428,
    "too_many_requests": 429,
    "throttled": 429,
    "unexpected_error": 500,
    "service_unavailable": 503,
}


def body(code: str, message: str = "Something went wrong.") -> bytes:
    error = {"request_id": "a6e1c493d7a29d91aed4338e6fcf077d", "message": message, "code": code}
    return msgspec.json.encode(error if STATUSES.get(code) == 401 else [error])


@pytest.mark.parametrize(("code", "rule"), sorted(BELVO_ERRORS.items()))
def test_each_documented_belvo_code_is_classified_as_its_table_row_says(
    code: str, rule: ErrorRule
) -> None:
    exc = belvo_error(STATUSES.get(code, 400), body(code), retry_after_s=3.0, endpoint="/x")

    assert exc.error.code == code
    assert (exc.error.type, exc.error.retryable) == (rule.type, rule.retryable)
    assert exc.reauth_required is rule.reauth_required
    assert (exc.error.provider, exc.retry_after_s) == ("belvo", 3.0)
    assert "a6e1c493d7a29d91aed4338e6fcf077d" in exc.error.message


@pytest.mark.parametrize(("status", "rule"), sorted(BELVO_HTTP_STATUSES.items()))
def test_a_status_whose_body_is_not_belvos_is_classified_by_the_status(
    status: int, rule: ErrorRule
) -> None:
    exc = belvo_error(status, b"<html>Bad Gateway</html>")

    assert (exc.error.code, exc.error.type) == (f"http_{status}", rule.type)
    assert exc.error.retryable is rule.retryable


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("login_error", ("auth", False, True)),
        ("session_expired", ("auth", False, True)),
        ("token_required", ("auth", False, True)),
        ("invalid_link", ("auth", False, True)),
        ("too_many_sessions", ("rate_limit", True, False)),
        ("institution_down", ("provider_down", True, False)),
        ("institution_unavailable", ("provider_down", True, False)),
        ("service_unavailable", ("provider_down", True, False)),
        ("unauthorized", ("auth", False, False)),
        ("request_timeout", ("provider_down", True, False)),
    ],
)
def test_the_codes_the_orchestrator_relies_on_are_in_the_table(
    code: str, expected: tuple[str, bool, bool]
) -> None:
    exc = belvo_error(STATUSES.get(code, 400), body(code))

    assert (exc.error.type, exc.error.retryable, exc.reauth_required) == expected


def test_an_undocumented_code_falls_back_to_its_status() -> None:
    assert belvo_error(503, body("brand_new_code")).error.type == "provider_down"
    assert belvo_error(418, body("brand_new_code")).error.type == "unknown"


@pytest.mark.parametrize(("status", "code"), sorted(LINK_STATUS_CODES.items()))
def test_a_link_that_needs_the_person_stops_reads(status: str, code: str) -> None:
    exc = link_status_error(status)

    assert exc is not None
    assert (exc.error.code, exc.reauth_required) == (code, True)


def test_a_valid_link_reads_on() -> None:
    assert link_status_error("valid") is None


def test_secrets_echoed_by_belvo_never_reach_the_message() -> None:
    exc = belvo_error(
        400,
        body("does_not_exist", f"link {LINK_ID} ({SECRET_PASSWORD})"),
        secrets=(LINK_ID, SECRET_PASSWORD),
    )

    assert LINK_ID not in str(exc)
    assert SECRET_PASSWORD not in str(exc)


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=2048))
def test_any_reply_body_is_classified_without_raising(status: int, raw: bytes) -> None:
    assert isinstance(belvo_error(status, raw), ProviderCallError)


@given(st.integers(min_value=400, max_value=599), st.text(max_size=50))
def test_wrongly_typed_json_bodies_are_classified_without_raising(status: int, text: str) -> None:
    for payload in ([], [text], [{"code": 5}], {"code": [text]}, {"detail": text}, 42):
        assert isinstance(belvo_error(status, msgspec.json.encode(payload)), ProviderCallError)


def test_a_cursor_round_trips_and_a_foreign_one_is_refused() -> None:
    cursor = Cursor(f"link={LINK_ID}&page=2&page_size=10", "2025-01-31T06:00:09Z")

    assert decode_cursor(encode_cursor(cursor)) == cursor
    assert decode_cursor(None).starts_run
    with pytest.raises(ValueError, match="not a Belvo cursor"):
        decode_cursor("fc1.abc")


def test_the_watermark_is_the_later_timestamp_whatever_its_precision() -> None:
    assert later("", "2025-01-31T06:00:09Z") == "2025-01-31T06:00:09Z"
    assert later("2025-01-31T06:00:09.5Z", "2025-01-31T06:00:09Z") == "2025-01-31T06:00:09.5Z"
    assert later("2025-01-31T06:00:09Z", "garbage") == "2025-01-31T06:00:09Z"


WEBHOOK = msgspec.json.encode(
    {
        "webhook_id": "aadf41a1fc8e4f79a49f7f04027ac999",
        "webhook_type": "TRANSACTIONS",
        "webhook_code": "new_transactions_available",
        "link_id": LINK_ID,
        "request_id": "4363b08b-51eb-4350-9c74-5df5ac92a7f6",
        "data": {"new_transactions": 5},
    }
)


def test_a_webhook_carrying_our_authorization_value_is_normalised() -> None:
    event = verify_belvo_webhook(
        {"authorization": WEBHOOK_AUTH}, WEBHOOK, expected=WEBHOOK_AUTH, provider="belvo"
    )

    assert (event.kind, event.item_id) == ("transactions_updated", LINK_ID)


def test_a_link_webhook_asks_for_reauthentication() -> None:
    raw = msgspec.json.encode(
        {"webhook_type": "LINKS", "webhook_code": "token_required", "link_id": LINK_ID}
    )

    event = verify_belvo_webhook(
        {"Authorization": WEBHOOK_AUTH}, raw, expected=WEBHOOK_AUTH, provider="belvo"
    )

    assert (event.kind, event.error_code) == ("login_required", "token_required")


def test_belvos_consent_notice_says_when_the_consent_ends() -> None:
    raw = msgspec.json.encode(
        {
            "webhook_type": "CONSENT",
            "webhook_code": "openfinance_consent_about_to_expire",
            "link_id": LINK_ID,
            "data": {"consent_id": "c-1", "consent_due_date": "2024-12-26T10:45:58.000Z"},
        }
    )

    event = verify_belvo_webhook(
        {"Authorization": WEBHOOK_AUTH}, raw, expected=WEBHOOK_AUTH, provider="belvo"
    )

    assert (event.kind, event.item_id) == ("consent_expiring", LINK_ID)
    assert event.expires_at is not None and event.expires_at.day == 26


def test_belvos_documented_link_type_and_invalid_credentials_ask_for_the_person() -> None:
    raw = msgspec.json.encode(
        {"webhook_type": "LINK", "webhook_code": "invalid_credentials", "link_id": LINK_ID}
    )

    event = verify_belvo_webhook(
        {"Authorization": WEBHOOK_AUTH}, raw, expected=WEBHOOK_AUTH, provider="belvo"
    )

    assert (event.kind, event.error_code) == ("login_required", "invalid_credentials")


@pytest.mark.parametrize(
    ("headers", "expected", "reason"),
    [
        ({}, WEBHOOK_AUTH, "no Authorization header"),
        ({"Authorization": "Bearer forged"}, WEBHOOK_AUTH, "does not match"),
        ({"Authorization": WEBHOOK_AUTH + "x"}, WEBHOOK_AUTH, "does not match"),
        ({"Authorization": WEBHOOK_AUTH}, None, "no webhook authorization configured"),
    ],
)
def test_a_missing_or_forged_authorization_is_refused(
    headers: dict[str, str], expected: str | None, reason: str
) -> None:
    with pytest.raises(WebhookRejectedError, match=reason) as caught:
        verify_belvo_webhook(headers, WEBHOOK, expected=expected, provider="belvo")

    assert WEBHOOK_AUTH not in str(caught.value)

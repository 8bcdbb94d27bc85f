"""Finicity's error bodies, account statuses, cursors and webhooks, row by row."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.providers.base import ProviderCallError, WebhookRejectedError
from services.providers.finicity.errors import (
    FINICITY_ERRORS,
    FINICITY_HTTP_STATUSES,
    aggregation_status_error,
    finicity_error,
)
from services.providers.finicity.webhooks import MAX_AGE_S, sign, verify_finicity_webhook
from services.providers.finicity.wire import Cursor, decode_cursor, encode_cursor
from services.providers.http import ErrorRule

pytestmark = pytest.mark.unit

PARTNER_SECRET = "partner-secret-4f9a2c7e1b"
CUSTOMER_ID = "5011648377"
NOW = 1_744_671_900.0


def body(code: str, message: str = "Something went wrong") -> bytes:
    # Finicity sends the code as a string or a number; send both shapes.
    return msgspec.json.encode({"code": int(code) if len(code) < 5 else code, "message": message})


def status_for(code: str) -> int:
    # Aggregation status codes come back as HTTP 500; API codes with their own status.
    return 500 if len(code) <= 4 else 400


@pytest.mark.parametrize(("code", "rule"), sorted(FINICITY_ERRORS.items()))
def test_each_documented_finicity_code_is_classified_as_its_table_row_says(
    code: str, rule: ErrorRule
) -> None:
    exc = finicity_error(status_for(code), body(code), retry_after_s=4.0, endpoint="/x")

    assert exc.error.code == code
    assert (exc.error.type, exc.error.retryable) == (rule.type, rule.retryable)
    assert exc.reauth_required is rule.reauth_required
    assert (exc.error.provider, exc.retry_after_s) == ("finicity", 4.0)


@pytest.mark.parametrize(("status", "rule"), sorted(FINICITY_HTTP_STATUSES.items()))
def test_a_status_whose_body_is_not_finicitys_is_classified_by_the_status(
    status: int, rule: ErrorRule
) -> None:
    exc = finicity_error(status, b"<html>upstream trouble</html>")

    assert (exc.error.code, exc.error.type) == (f"http_{status}", rule.type)
    assert exc.error.retryable is rule.retryable


# Aggregation status codes are the short ones; API codes have five digits.
AGGREGATION_ROWS = sorted((c, r) for c, r in FINICITY_ERRORS.items() if len(c) <= 4)


@pytest.mark.parametrize(("code", "rule"), AGGREGATION_ROWS)
def test_each_account_aggregation_status_in_the_table_stops_a_read(
    code: str, rule: ErrorRule
) -> None:
    exc = aggregation_status_error(int(code))

    assert exc is not None
    assert (exc.error.code, exc.error.type, exc.reauth_required) == (
        code,
        rule.type,
        rule.reauth_required,
    )


@pytest.mark.parametrize("code", [0, 7777])
def test_success_or_an_unheard_of_aggregation_status_lets_the_read_go_on(code: int) -> None:
    assert aggregation_status_error(code) is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("103", ("auth", False, True)),
        ("185", ("auth", False, True)),
        ("102", ("provider_down", True, False)),
        ("320", ("maintenance", True, False)),
        ("10023", ("auth", False, False)),
        ("10005", ("validation", False, False)),
    ],
)
def test_the_codes_the_orchestrator_relies_on_are_in_the_table(
    code: str, expected: tuple[str, bool, bool]
) -> None:
    exc = finicity_error(status_for(code), body(code))

    assert (exc.error.type, exc.error.retryable, exc.reauth_required) == expected


def test_bank_side_trouble_is_marked_as_one_failover_cannot_fix() -> None:
    assert FINICITY_ERRORS["103"].failover_helps is False
    assert FINICITY_ERRORS["320"].failover_helps is False
    # 102 is the bank not responding: it reaches every provider, as Plaid's
    # INSTITUTION_NOT_RESPONDING does. Finicity's own connection failing does not.
    assert FINICITY_ERRORS["102"].failover_helps is False
    assert FINICITY_ERRORS["102"].blame == "institution"
    assert FINICITY_ERRORS["101"].failover_helps is True


def test_a_429_without_a_known_code_is_a_rate_limit() -> None:
    exc = finicity_error(429, b'{"code": 429, "message": "Too many requests"}', retry_after_s=2.0)

    assert (exc.error.type, exc.error.retryable, exc.retry_after_s) == ("rate_limit", True, 2.0)


def test_secrets_echoed_by_finicity_never_reach_the_message() -> None:
    echoed = f"customer {CUSTOMER_ID} with secret {PARTNER_SECRET} not found"

    exc = finicity_error(404, body("14001", echoed), secrets=(CUSTOMER_ID, PARTNER_SECRET))

    assert CUSTOMER_ID not in str(exc)
    assert PARTNER_SECRET not in str(exc)


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=2048))
def test_any_reply_body_is_classified_without_raising(status: int, raw: bytes) -> None:
    assert isinstance(finicity_error(status, raw), ProviderCallError)


@given(st.integers(min_value=400, max_value=599), st.text(max_size=50))
def test_wrongly_typed_json_bodies_are_classified_without_raising(status: int, text: str) -> None:
    for payload in ({"code": None}, {"code": [text]}, [text], {"message": text}, text):
        assert isinstance(finicity_error(status, msgspec.json.encode(payload)), ProviderCallError)


def test_a_cursor_round_trips_and_a_foreign_one_is_refused() -> None:
    cursor = Cursor(100, 200, 51, (("5011648377", "USD"),))

    assert decode_cursor(encode_cursor(cursor), now=300) == cursor
    with pytest.raises(ValueError, match="not a Finicity cursor"):
        decode_cursor("mx1.0.run", now=300)
    with pytest.raises(ValueError, match="not a Finicity cursor"):
        decode_cursor("fc1.!!!", now=300)


def test_no_cursor_starts_a_first_run_over_finicitys_whole_history() -> None:
    first = decode_cursor(None, now=10**9)

    assert first.starts_run
    assert first.to_date == 10**9
    assert first.from_date < first.to_date - 2 * 365 * 86400


def webhook(event: Mapping[str, object], *, sent_at: float = NOW) -> bytes:
    return msgspec.json.encode({"eventId": f"{int(sent_at * 1000)}-0e73d1719173766f", **event})


ADDED: Mapping[str, object] = {
    "customerId": CUSTOMER_ID,
    "eventType": "added",
    "payload": {"accounts": [{"id": "7077265539", "institutionLoginId": 1007302745}]},
}


def test_a_well_signed_recent_webhook_is_normalised() -> None:
    raw = webhook(ADDED)

    event = verify_finicity_webhook(
        {"x-finicity-signature": sign(raw, PARTNER_SECRET)},
        raw,
        partner_secret=PARTNER_SECRET,
        now=NOW + 30,
        provider="finicity",
    )

    assert (event.kind, event.item_id) == ("public_token", f"{CUSTOMER_ID}:1007302745")
    assert event.public_token == event.item_id


@pytest.mark.parametrize(
    ("headers", "sent_at", "reason"),
    [
        ({}, NOW, "no X-Finicity-Signature"),
        ({"X-Finicity-Signature": "0" * 64}, NOW, "does not match"),
        ({"X-Finicity-Signature": "forged"}, NOW, "does not match"),
        (None, NOW - MAX_AGE_S - 1, "outside the"),
        (None, NOW + MAX_AGE_S + 1, "outside the"),
    ],
)
def test_a_missing_forged_or_stale_webhook_is_refused(
    headers: dict[str, str] | None, sent_at: float, reason: str
) -> None:
    raw = webhook(ADDED, sent_at=sent_at)
    headers = (
        headers if headers is not None else {"X-Finicity-Signature": sign(raw, PARTNER_SECRET)}
    )

    with pytest.raises(WebhookRejectedError, match=reason) as caught:
        verify_finicity_webhook(
            headers, raw, partner_secret=PARTNER_SECRET, now=NOW, provider="finicity"
        )

    assert PARTNER_SECRET not in str(caught.value)


def test_a_body_altered_after_signing_is_refused() -> None:
    raw = webhook(ADDED)
    signature = sign(raw, PARTNER_SECRET)

    with pytest.raises(WebhookRejectedError, match="does not match"):
        verify_finicity_webhook(
            {"X-Finicity-Signature": signature},
            raw.replace(b"added", b"adder"),
            partner_secret=PARTNER_SECRET,
            now=NOW,
            provider="finicity",
        )


def test_only_a_ping_may_come_without_an_event_id() -> None:
    ping = b'{"eventType":"ping","payload":{}}'
    other = b'{"eventType":"added","payload":{}}'

    event = verify_finicity_webhook(
        {"X-Finicity-Signature": sign(ping, PARTNER_SECRET)},
        ping,
        partner_secret=PARTNER_SECRET,
        now=NOW,
        provider="finicity",
    )

    assert event.kind == "other"
    with pytest.raises(WebhookRejectedError, match="no eventId"):
        verify_finicity_webhook(
            {"X-Finicity-Signature": sign(other, PARTNER_SECRET)},
            other,
            partner_secret=PARTNER_SECRET,
            now=NOW,
            provider="finicity",
        )

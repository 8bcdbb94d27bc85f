"""MX's error replies and member states become the right ErrorInfo, row by row."""

from __future__ import annotations

import base64

import msgspec
import pytest

from services.providers.http import ErrorRule
from services.providers.mx.errors import (
    MX_CONNECTION_STATUSES,
    MX_HTTP_STATUSES,
    connection_status_error,
    mx_error,
)
from services.providers.mx.wire import Cursor, MxTransaction, decode_cursor, encode_cursor

pytestmark = pytest.mark.unit

USER_GUID = "USR-6f1d2c3b-9a8e-4d7c-b5a4-3e2f1d0c9b8a"


def mx_body(status: int, message: str = "Something went wrong.") -> bytes:
    return msgspec.json.encode({"error": {"message": message, "status": status}})


@pytest.mark.parametrize(("status", "row"), sorted(MX_HTTP_STATUSES.items()))
def test_each_mx_http_status_is_classified_as_its_table_row_says(
    status: int, row: tuple[str, ErrorRule]
) -> None:
    code, rule = row

    exc = mx_error(status, mx_body(status), retry_after_s=2.0)

    assert exc.error.code == code
    assert exc.error.type == rule.type
    assert exc.error.retryable is rule.retryable
    assert exc.error.provider == "mx"
    assert exc.http_status == status
    assert exc.retry_after_s == 2.0
    assert exc.reauth_required is False


@pytest.mark.parametrize(("connection_status", "rule"), sorted(MX_CONNECTION_STATUSES.items()))
def test_each_troubled_member_state_is_classified_as_its_table_row_says(
    connection_status: str, rule: ErrorRule
) -> None:
    exc = connection_status_error(connection_status)

    assert exc is not None
    assert exc.error.code == connection_status
    assert (exc.error.type, exc.error.retryable) == (rule.type, rule.retryable)
    assert exc.reauth_required is rule.reauth_required


@pytest.mark.parametrize(
    "connection_status",
    ["CHALLENGED", "DENIED", "EXPIRED", "IMPAIRED", "IMPEDED", "LOCKED", "PREVENTED", "REJECTED"],
)
def test_member_states_that_need_the_person_ask_for_reauth(connection_status: str) -> None:
    exc = connection_status_error(connection_status.lower())

    assert exc is not None
    assert (exc.error.type, exc.error.retryable, exc.reauth_required) == ("auth", False, True)


@pytest.mark.parametrize("connection_status", ["CONNECTED", "CREATED", "UPDATED", "RESUMED", "NEW"])
def test_healthy_or_unheard_of_member_states_let_the_read_go_on(connection_status: str) -> None:
    assert connection_status_error(connection_status) is None


@pytest.mark.parametrize(
    ("status", "code", "expected_type"),
    [
        (429, "TOO_MANY_REQUESTS", "rate_limit"),
        (503, "SERVICE_UNAVAILABLE", "maintenance"),
        (500, "INTERNAL_SERVER_ERROR", "provider_down"),
        (401, "UNAUTHORIZED", "auth"),
        (400, "BAD_REQUEST", "validation"),
        (404, "NOT_FOUND", "validation"),
    ],
)
def test_the_statuses_the_orchestrator_relies_on_are_in_the_table(
    status: int, code: str, expected_type: str
) -> None:
    assert MX_HTTP_STATUSES[status][0] == code
    assert MX_HTTP_STATUSES[status][1].type == expected_type


def test_a_documented_status_is_classified_even_when_a_gateway_replaced_the_body() -> None:
    exc = mx_error(503, b"<html>Service Temporarily Unavailable</html>")

    assert (exc.error.code, exc.error.type) == ("SERVICE_UNAVAILABLE", "maintenance")


def test_the_older_string_error_shape_is_understood() -> None:
    exc = mx_error(400, b'{"error": "User with guid USR-1 not found."}')

    assert exc.error.type == "validation"
    assert "not found" in exc.error.message


def test_an_undocumented_client_error_is_unknown_and_not_retryable() -> None:
    exc = mx_error(418, mx_body(418))

    assert (exc.error.code, exc.error.type, exc.error.retryable) == ("http_418", "unknown", False)


def test_an_undocumented_server_error_is_provider_down() -> None:
    exc = mx_error(507, mx_body(507))

    assert (exc.error.type, exc.error.retryable) == ("provider_down", True)


def test_an_undocumented_status_with_a_garbled_body_is_an_invalid_response() -> None:
    exc = mx_error(418, b"\x00\xff")

    assert exc.error.code == "invalid_response"


def test_the_user_guid_echoed_in_mx_s_message_is_masked() -> None:
    exc = mx_error(
        404, mx_body(404, f"User with guid {USER_GUID} not found."), secrets=(USER_GUID,)
    )

    assert USER_GUID not in str(exc)


def _record(guid: str, updated_at: str, created_at: str = "2025-01-01T00:00:00Z") -> MxTransaction:
    return MxTransaction(
        guid=guid, account_guid="ACT-1", amount=1.0, updated_at=updated_at, created_at=created_at
    )


@pytest.mark.parametrize(
    "cursor",
    [Cursor(), Cursor("2025-01-31T10:00:00Z", ("TRN-1",), 3, "2025-02-01T00:00:00Z", ("TRN-2",))],
)
def test_a_cursor_round_trips(cursor: Cursor) -> None:
    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_no_cursor_starts_a_first_run_without_a_mark() -> None:
    assert decode_cursor(None) == Cursor()
    assert decode_cursor(None).starts_run


@pytest.mark.parametrize("stored", ["mx1.0.run", "mx1.250.more"])
def test_a_page_offset_cursor_stored_before_the_change_feed_starts_a_first_run(
    stored: str,
) -> None:
    assert decode_cursor(stored) == Cursor()


def test_only_what_is_newer_than_the_mark_is_new() -> None:
    cursor = Cursor("2025-01-31T10:00:00Z", ("TRN-1",))

    assert cursor.delivered(_record("TRN-0", "2025-01-31T09:59:59Z"))
    assert cursor.delivered(_record("TRN-1", "2025-01-31T10:00:00Z"))
    assert not cursor.delivered(_record("TRN-2", "2025-01-31T10:00:00Z"))
    assert not cursor.delivered(_record("TRN-1", "2025-01-31T10:00:01Z"))


def test_the_next_run_starts_after_the_newest_record_the_run_saw() -> None:
    cursor = Cursor("2025-01-31T10:00:00Z", ("TRN-1",))
    for guid, when in [("TRN-5", "2025-02-01T08:00:00Z"), ("TRN-3", "2025-02-01T09:00:00Z")]:
        cursor = cursor.seen(_record(guid, when))
    cursor = cursor.next_page().seen(_record("TRN-4", "2025-02-01T09:00:00Z"))

    assert cursor.next_run() == Cursor("2025-02-01T09:00:00Z", ("TRN-3", "TRN-4"))


def test_a_run_that_saw_nothing_starts_the_next_where_it_started() -> None:
    cursor = Cursor("2025-01-31T10:00:00Z", ("TRN-1",), page=2)

    assert cursor.next_run() == Cursor("2025-01-31T10:00:00Z", ("TRN-1",))


@pytest.mark.parametrize(
    "cursor",
    [
        "7",
        "mx1.",
        "mx1.3.maybe",
        "mx2.",
        "mx2.!!",
        "mx2." + base64.urlsafe_b64encode(b'["", [], 0, "", []]').decode(),
        "mx2." + base64.urlsafe_b64encode(b'["yesterday", [], 1, "", []]').decode(),
    ],
)
def test_a_cursor_that_is_not_ours_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="not an MX cursor"):
        decode_cursor(cursor)

"""Bitso's documented error codes classified from their real bodies, table-driven."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.providers.bitso.errors import (
    BITSO_ERROR_CATEGORIES,
    BITSO_ERRORS,
    BITSO_HTTP_STATUSES,
    THROTTLE_LOCKOUT_S,
    bitso_error,
)
from services.providers.http import ErrorRule

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-bitso-api-secret"
_STATUS_BY_CATEGORY = {"01": 500, "02": 401, "08": 420}


def body(code: str, message: str = "") -> bytes:
    return msgspec.json.encode(
        {"success": False, "error": {"code": code, "message": message or f"error {code}"}}
    )


@pytest.mark.parametrize(("code", "rule"), sorted(BITSO_ERRORS.items()))
def test_each_documented_code_is_classified_by_the_table(code: str, rule: ErrorRule) -> None:
    status = _STATUS_BY_CATEGORY.get(code[:2], 400)

    exc = bitso_error(status, body(code), endpoint="/v3/ledger/")

    assert exc.error.code == code
    assert exc.error.type == rule.type
    assert exc.error.retryable == rule.retryable
    assert exc.reauth_required == rule.reauth_required
    assert exc.http_status == status
    assert exc.error.provider == "bitso"


@pytest.mark.parametrize(("category", "rule"), sorted(BITSO_ERROR_CATEGORIES.items()))
def test_an_undocumented_code_falls_back_to_its_category(category: str, rule: ErrorRule) -> None:
    exc = bitso_error(400, body(f"{category}99"))

    assert (exc.error.type, exc.error.retryable) == (rule.type, rule.retryable)


@pytest.mark.parametrize(("status", "entry"), sorted(BITSO_HTTP_STATUSES.items()))
def test_a_gateway_page_is_classified_by_status(status: int, entry: tuple[str, ErrorRule]) -> None:
    code, rule = entry

    exc = bitso_error(status, b"<html>Service Temporarily Unavailable</html>")

    assert (exc.error.code, exc.error.type, exc.error.retryable) == (
        code,
        rule.type,
        rule.retryable,
    )


def test_throttling_waits_out_bitsos_one_minute_lockout_unless_told_otherwise() -> None:
    assert bitso_error(420, body("0801")).retry_after_s == THROTTLE_LOCKOUT_S
    assert bitso_error(420, body("0801"), retry_after_s=5.0).retry_after_s == 5.0
    assert bitso_error(401, body("0201")).retry_after_s is None


def test_maintenance_page_on_503_is_maintenance() -> None:
    exc = bitso_error(503, b"<html>maintenance</html>")

    assert exc.error.type == "maintenance"
    assert exc.error.retryable


def test_a_secret_echoed_by_bitso_is_masked() -> None:
    exc = bitso_error(401, body("0201", f"bad key pair KEY:{SECRET}"), secrets=(SECRET,))

    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)
    assert SECRET not in exc.error.message


def test_an_unclassifiable_reply_is_an_invalid_response() -> None:
    exc = bitso_error(418, b"\x00\xff not json")

    assert exc.error.code == "invalid_response"
    assert exc.error.type == "unknown"


@given(status=st.integers(min_value=100, max_value=599), raw=st.binary(max_size=2000))
def test_any_body_is_classified_without_raising(status: int, raw: bytes) -> None:
    exc = bitso_error(status, raw)

    assert exc.error.provider == "bitso"
    assert len(exc.error.message) <= 300


@given(
    code=st.one_of(st.text(max_size=12), st.integers(), st.none(), st.lists(st.integers())),
    message=st.one_of(st.text(max_size=500), st.integers(), st.none()),
)
def test_wrongly_typed_error_bodies_are_classified_without_raising(
    code: object, message: object
) -> None:
    raw = msgspec.json.encode({"success": False, "error": {"code": code, "message": message}})

    exc = bitso_error(400, raw)

    assert exc.error.type in {"auth", "rate_limit", "provider_down", "validation", "unknown"}

"""Whose failure an error is: only the provider's and the bank's count against health."""

from __future__ import annotations

import msgspec
import pytest

from events.errors import ERROR_TYPES, ErrorInfo, blame_of, counts_against_health, default_blame
from services.providers.http import INVALID_INPUT, ErrorRule

pytestmark = pytest.mark.unit


def test_a_callers_bad_input_never_counts_against_the_provider() -> None:
    error = INVALID_INPUT.error("mx", "invalid_cursor", "not an MX cursor").error
    assert error.blame == "caller"
    assert not counts_against_health(error)


def test_a_rule_says_whose_failure_it_is_or_it_follows_the_type() -> None:
    assert ErrorRule("provider_down", True).blame == "provider"
    assert ErrorRule("auth", False, reauth_required=True).blame == "person"
    quota = ErrorRule("auth", False, blame="provider")  # our client credentials there
    assert quota.error("plaid", "INVALID_API_KEYS", "keys").error.blame == "provider"


def test_an_event_recorded_before_blame_existed_reads_by_its_type() -> None:
    recorded = b'{"code":"INSTITUTION_DOWN","message":"m","type":"maintenance","retryable":true}'
    error = msgspec.json.decode(recorded, type=ErrorInfo)
    assert error.blame is None
    assert blame_of(error) == "institution"
    assert counts_against_health(error)


@pytest.mark.parametrize("error_type", ERROR_TYPES)
def test_every_type_has_a_default_blame(error_type: str) -> None:
    assert default_blame(error_type) in ("provider", "institution", "person", "caller", "syncyard")  # type: ignore[arg-type]

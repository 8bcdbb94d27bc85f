"""The pure rules of the read side: score, status, histogram, attempt types, parameters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from infra.config import load_settings, parse_call_prices
from infra.http.params import (
    InvalidParameterError,
    as_of_param,
    days_param,
    period,
    region_param,
)
from projections.attempt_types import attempt_type
from projections.health_rules import (
    HISTOGRAM_SIZE,
    HealthThresholds,
    health_score,
    health_status,
    latency_bucket,
    percentile_ms,
    window_start,
)
from projections.overview import reliability_score

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("avg_ms", "expected"),
    [(1999.9, 90), (2000.0, 80), (5000.0, 80), (5000.1, 70), (None, 80)],
)
def test_the_response_time_term_rewards_under_2s_and_penalises_over_5s(
    avg_ms: float | None, expected: int
) -> None:
    # Base 80%, last success 1 h ago exactly (no bonus), then the speed term.
    assert health_score(0.8, avg_ms, NOW - H, NOW) == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (H - timedelta(seconds=1), 85),
        (H, 80),
        (24 * H, 80),
        (24 * H + timedelta(seconds=1), 70),
    ],
)
def test_the_recency_term_rewards_under_1h_and_penalises_over_24h(
    age: timedelta, expected: int
) -> None:
    assert health_score(0.8, 3000.0, NOW - age, NOW) == expected


def test_the_score_is_clamped_and_a_provider_never_successful_loses_ten() -> None:
    assert health_score(1.0, 100.0, NOW, NOW) == 100  # 100 + 10 + 5
    assert health_score(0.0, 9000.0, None, NOW) == 0  # 0 - 10 - 10
    assert health_score(None, None, None, NOW) == 90  # no calls to judge: 100, never ok: -10


def test_status_is_down_with_an_open_breaker_or_too_many_errors() -> None:
    t = HealthThresholds(degraded_error_rate=0.1, down_error_rate=0.5, min_calls=5)

    def status(breaker: str = "closed", calls: int = 10, recent: float = 0.0,
               day: float = 0.0, avg: float = 100.0) -> str:  # fmt: skip
        return health_status(
            breaker=breaker,  # type: ignore[arg-type]
            recent_calls=calls,
            recent_error_rate=recent,
            day_error_rate=day,
            recent_avg_ms=avg,
            thresholds=t,
        )

    assert status() == "healthy"
    assert status(breaker="open") == "down"
    assert status(breaker="half_open") == "degraded"
    assert status(recent=0.5) == "down"
    assert status(recent=0.1) == "degraded"
    assert status(recent=0.09) == "healthy"
    assert status(avg=5001.0) == "degraded"
    # Fewer than min_calls in 5 minutes: the 24 h rate decides, not one failed call.
    assert status(calls=4, recent=1.0, day=0.02) == "healthy"


def test_p95_is_the_upper_bound_of_the_bucket_holding_it() -> None:
    histogram = [0] * HISTOGRAM_SIZE
    for ms in [100.0] * 95 + [4000.0] * 5:
        histogram[latency_bucket(ms)] += 1
    p95 = percentile_ms(histogram, 0.95)
    assert p95 is not None and 100.0 <= p95 < 100.0 * 2**0.25
    p99 = percentile_ms(histogram, 0.99)
    assert p99 is not None and 4000.0 <= p99 < 4000.0 * 2**0.25
    assert percentile_ms([0] * HISTOGRAM_SIZE, 0.95) is None
    assert latency_bucket(0.0) == 0 and latency_bucket(10**9) == HISTOGRAM_SIZE - 1


def test_a_window_takes_every_minute_bucket_it_overlaps() -> None:
    assert window_start(NOW, timedelta(minutes=5)) == NOW - timedelta(minutes=6)


@pytest.mark.parametrize(
    ("op", "kind"),
    [
        ("link.create", "initial"),
        ("connection.register", "initial"),
        ("link.update_mode", "reconnect"),
        ("connection.reconnect", "reconnect"),
        ("sync.transactions", "sync"),
        ("accounts.get", "sync"),
    ],
)
def test_each_op_maps_to_one_attempt_type(op: str, kind: str) -> None:
    assert attempt_type(op) == kind


def test_the_reliability_score_weighs_syncs_70_and_connection_health_30() -> None:
    assert reliability_score(1.0, 0.5) == 85.0
    assert reliability_score(None, 0.5) == 50.0
    assert reliability_score(0.9, None) == 90.0
    assert reliability_score(None, None) is None


def test_bad_parameters_are_refused_with_a_message_naming_them() -> None:
    with pytest.raises(InvalidParameterError, match="days must be between 1 and 90"):
        days_param({"days": "91"}, 7)
    with pytest.raises(InvalidParameterError, match="days must be an integer"):
        days_param({"days": "a week"}, 7)
    with pytest.raises(InvalidParameterError, match="region"):
        region_param({"region": "U$"})
    with pytest.raises(InvalidParameterError, match="UTC offset"):
        as_of_param({"as_of": "2026-03-02T11:00:00"}, NOW)
    with pytest.raises(InvalidParameterError, match="future"):
        as_of_param({"as_of": "2026-03-02T13:00:00Z"}, NOW)
    # An unencoded "+" reaches us as a space; the offset is still understood.
    assert as_of_param({"as_of": "2026-03-02T11:00:00 00:00"}, NOW) == NOW - H


@pytest.mark.parametrize(
    "as_of", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59Z"]
)
def test_an_as_of_before_anything_was_recorded_is_refused_not_an_overflow(as_of: str) -> None:
    with pytest.raises(InvalidParameterError, match="as_of must not be before 2000-01-01"):
        period({"as_of": as_of, "days": "90"}, NOW, 7)


def test_thresholds_and_prices_come_from_the_environment_over_the_defaults() -> None:
    settings = load_settings(
        {
            "SYNCYARD_HEALTH_DOWN_ERROR_RATE": "0.3",
            "SYNCYARD_HEALTH_MIN_CALLS": "2",
            "SYNCYARD_CALL_PRICES": "plaid=0.2, acme=1",
        }
    ).read_models
    assert settings.health.down_error_rate == 0.3 and settings.health.min_calls == 2
    assert settings.health.degraded_error_rate == HealthThresholds().degraded_error_rate
    assert settings.call_prices["plaid"] == 0.2 and settings.call_prices["acme"] == 1.0
    assert settings.call_prices["mx"] == 0.04
    with pytest.raises(ValueError, match="write PROVIDER=PRICE"):
        parse_call_prices("plaid=cheap")
    with pytest.raises(ValueError, match="write PROVIDER=PRICE"):
        parse_call_prices("mx=-0.1")
    with pytest.raises(ValueError, match="degraded error rate <= down error rate"):
        load_settings({"SYNCYARD_HEALTH_DEGRADED_ERROR_RATE": "0.6"})

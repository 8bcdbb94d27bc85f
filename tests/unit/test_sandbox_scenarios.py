"""Sandbox scenarios: the shipped files parse, and their timelines fire on a hand-moved clock."""

from __future__ import annotations

import random
import statistics

import pytest

from sandbox.faults import Fault, FaultBook, LogNormal, RequestContext
from sandbox.scenarios import ScenarioError, available, load, parse

pytestmark = pytest.mark.unit

SHIPPED = [
    "bank-maintenance",
    "brownout",
    "calm",
    "plaid-outage",
    "rate-limited",
    "seed-failure-model",
]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failures(book: FaultBook, provider: str, endpoint: str, calls: int) -> int:
    drawn = (book.draw(provider, endpoint) for _ in range(calls))
    return sum(1 for f in drawn if f is not None and not f.only_slows)


def test_every_shipped_scenario_parses_and_is_named_for_its_file() -> None:
    assert set(SHIPPED) <= set(available())
    for name in SHIPPED:
        assert load(name).name == name


def test_plaid_outage_fails_plaid_from_its_start_to_its_end_and_recovers_after() -> None:
    clock = Clock()
    book = FaultBook(7, clock, default_scenario=load("plaid-outage"))

    assert failures(book, "plaid", "/transactions/sync", 20) == 0
    clock.now += 5
    assert failures(book, "plaid", "/transactions/sync", 20) == 20
    assert failures(book, "mx", "/users/{user_guid}/members/{member_guid}/status", 20) == 0
    clock.now += 60
    assert failures(book, "plaid", "/transactions/sync", 20) == 0


def test_calm_never_fails_a_call() -> None:
    book = FaultBook(7, Clock(), default_scenario=load("calm"))

    assert failures(book, "plaid", "/transactions/sync", 500) == 0


def test_the_seed_failure_model_fails_the_primary_30_to_40_percent_of_the_time() -> None:
    book = FaultBook(7, Clock(), default_scenario=load("seed-failure-model"))

    share = failures(book, "plaid", "/transactions/sync", 4000) / 4000

    assert 0.30 <= share <= 0.40


def test_a_maintenance_window_announces_the_seconds_until_its_end() -> None:
    clock = Clock()
    book = FaultBook(7, clock, default_scenario=load("bank-maintenance"))
    at_bank = RequestContext(institution_id="ins_1", institution_name="Gingham Savings")
    clock.now += 30

    fault = book.draw("plaid", "/accounts/get", context=at_bank)
    elsewhere = book.draw("plaid", "/accounts/get", context=RequestContext())

    assert fault is not None and fault.error_code == "INSTITUTION_DOWN"
    assert fault.retry_after_s == pytest.approx(90.0)
    assert elsewhere is None or elsewhere.only_slows


def test_log_normal_latency_has_the_median_and_p99_it_was_given() -> None:
    rng = random.Random(1)
    samples = sorted(LogNormal(median_ms=40, p99_ms=400).draw(rng) for _ in range(20000))

    assert statistics.median(samples) == pytest.approx(40, rel=0.05)
    assert samples[int(0.99 * len(samples))] == pytest.approx(400, rel=0.15)


def test_a_reset_restarts_the_default_scenario_s_timeline() -> None:
    clock = Clock()
    book = FaultBook(7, clock, default_scenario=load("plaid-outage"))
    clock.now += 100
    book.reset()
    clock.now += 10

    assert failures(book, "plaid", "/accounts/get", 5) == 5


def test_an_armed_fault_and_a_scenario_latency_add_up() -> None:
    book = FaultBook(7, Clock(), default_scenario=load("calm"))
    book.arm(Fault(provider="plaid", error_code="ITEM_LOCKED", latency_ms=100))

    fault = book.draw("plaid", "/accounts/get")

    assert fault is not None and fault.error_code == "ITEM_LOCKED"
    assert fault.latency_ms is not None and fault.latency_ms > 100


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('name = "x"\n[[faults]]\nprovider = "plaid"\nrat = 0.5\n', "unknown field"),
        ('name = "x"\n[[faults]]\nprovider = "nobody"\n', "provider"),
        ('name = "x"\n[[faults]]\nprovider = "plaid"\nrate = 2\n', "rate"),
        ("name = ", "Invalid"),
    ],
)
def test_a_scenario_with_a_mistake_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ScenarioError, match=reason):
        parse(text)


@pytest.mark.parametrize("name", ["../etc/passwd", "no-such-scenario", ""])
def test_only_shipped_scenarios_load_by_name(name: str) -> None:
    with pytest.raises(ScenarioError):
        load(name)

"""Providers ordered by the directory adjusted by live health, and the scores recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from events.breaker import BreakerOpened
from events.connection import AttemptOutcome, ConnectionAttempted, SyncCompleted
from services.connections.domain import decide_outcome
from services.failover import HEALTH_MARGIN, rank_by_health
from services.orchestrator import Orchestrator
from services.providers.base import LinkCredentials
from services.resilience.live_health import MIN_CALLS, LiveHealth
from tests.unit.test_connection_domain import registered
from tests.unit.test_orchestrator import SYNC, FakeProvider, err

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC)


def link(provider: str) -> LinkCredentials:
    return LinkCredentials(provider=provider, item_id=f"item-{provider}", access_token="tok")


def call(
    provider: str,
    outcome: AttemptOutcome = "success",
    *,
    error_type: str | None = None,
    at: datetime = NOW,
    ms: float = 100.0,
) -> ConnectionAttempted:
    return ConnectionAttempted(
        originator_id=uuid.uuid4(),
        originator_version=1,
        timestamp=at,
        command_id="c",
        op="sync.transactions",
        provider=provider,
        region="US",
        attempt=1,
        failover=False,
        outcome=outcome,
        response_time_ms=ms,
        error_type=error_type if outcome != "success" else None,
    )


def health_after(*events: ConnectionAttempted | BreakerOpened) -> LiveHealth:
    health = LiveHealth()
    for event in events:
        health.observe(event)
    return health


def failing(provider: str, n: int, error_type: str = "provider_down") -> list[ConnectionAttempted]:
    return [call(provider, "failure", error_type=error_type) for _ in range(n)]


def test_scores_within_the_margin_keep_the_directorys_order() -> None:
    ordered, ranking = rank_by_health(
        [link("plaid"), link("mx"), link("finicity")], {"plaid": 90, "mx": 100, "finicity": 100}
    )
    assert [x.provider for x in ordered] == ["plaid", "mx", "finicity"]
    assert ranking.order == ranking.directory == ("plaid", "mx", "finicity")
    assert ranking.margin == HEALTH_MARGIN


def test_a_provider_clearly_less_healthy_goes_after_the_healthy_ones_and_the_scores_are_kept() -> (
    None
):
    ordered, ranking = rank_by_health(
        [link("plaid"), link("mx"), link("finicity")], {"plaid": 62, "mx": 97, "finicity": 90}
    )
    assert [x.provider for x in ordered] == ["mx", "finicity", "plaid"]
    assert ranking.directory == ("plaid", "mx", "finicity")
    assert ranking.scores == {"plaid": 62, "mx": 97, "finicity": 90}


def test_the_order_depends_on_the_scores_not_on_a_chain_of_close_comparisons() -> None:
    # 80, 90, 100: each within the margin of the next, but plaid is 20 behind the best,
    # so it waits until the best left is within its reach; mx (10 behind) keeps its place.
    ordered, _ = rank_by_health(
        [link("plaid"), link("mx"), link("finicity")], {"plaid": 80, "mx": 90, "finicity": 100}
    )
    assert [x.provider for x in ordered] == ["mx", "finicity", "plaid"]


def test_failures_lower_a_providers_live_score_only_once_there_are_enough_calls() -> None:
    few = health_after(*failing("plaid", MIN_CALLS - 1))
    assert few.score("plaid", "US", NOW) == 100  # no judgement yet: 100, +10 fast, -10 no success
    many = health_after(call("plaid"), *failing("plaid", MIN_CALLS))
    assert many.score("plaid", "US", NOW) < 40
    assert many.score("mx", "US", NOW) == 90  # never called: nothing known against it


def test_a_callers_or_a_persons_error_says_nothing_of_the_providers_health() -> None:
    health = health_after(
        call("mx"),
        *failing("mx", 3, "validation"),
        *failing("mx", 3, "auth"),
        call("mx", "cancelled"),
    )
    assert health.score("mx", "US", NOW) == 100


def test_calls_older_than_the_window_no_longer_count() -> None:
    old = NOW - timedelta(minutes=30)
    health = health_after(*[call("plaid", "failure", error_type="network", at=old)] * 10)
    assert health.score("plaid", "US", NOW) == 90


def test_a_breaker_transition_clears_the_window_so_the_probe_keeps_its_place() -> None:
    opened = BreakerOpened(
        originator_id=uuid.uuid4(),
        originator_version=1,
        timestamp=NOW,
        provider="plaid",
        region="US",
        open_until=NOW + timedelta(seconds=60),
        reason="5 failures",
    )
    health = health_after(call("plaid"), *failing("plaid", 10), opened)
    assert health.score("plaid", "US", NOW) == 100  # no calls since, and a recent success


def test_one_banks_breaker_at_a_provider_does_not_clear_the_providers_window() -> None:
    # With many banks some bank breaker is always moving: clearing the provider's
    # window on each would keep a sick provider's score at 100.
    opened_at_a_bank = BreakerOpened(
        originator_id=uuid.uuid4(),
        originator_version=1,
        timestamp=NOW,
        provider="plaid",
        region="US",
        institution_id="gingham_savings",
        open_until=NOW + timedelta(seconds=60),
        reason="5 failures",
    )
    sick = health_after(*failing("plaid", 10), opened_at_a_bank)
    assert sick.score("plaid", "US", NOW) < health_after().score("plaid", "US", NOW)


async def test_the_orchestrator_tries_the_healthier_link_first_and_records_both_scores() -> None:
    plaid, mx = FakeProvider("plaid", err("provider_down", True)), FakeProvider("mx")
    orch = Orchestrator(
        {"plaid": plaid, "mx": mx}, hierarchy={"US": ("plaid", "mx")}, wall_clock=lambda: NOW
    )
    orch.health = health_after(*failing("plaid", 10), call("mx"))
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.success and outcome.provider == "mx" and plaid.calls == 0
    assert not outcome.failover_used  # mx was the first choice, not a fallback
    assert outcome.ranking is not None
    assert outcome.ranking.order == ("mx", "plaid")
    assert outcome.ranking.scores["mx"] == 100 and outcome.ranking.scores["plaid"] == 0

    events = decide_outcome(registered("plaid", "mx"), SYNC, outcome, now=NOW, trace={})
    completed = next(e for e in events if isinstance(e, SyncCompleted))
    assert completed.ranking == outcome.ranking


async def test_one_link_is_no_choice_and_records_no_ranking() -> None:
    orch = Orchestrator({"plaid": FakeProvider("plaid")}, hierarchy={"US": ("plaid",)})
    orch.health = LiveHealth()
    outcome = await orch.execute_with_failover(SYNC, [link("plaid")], "US")
    assert outcome.success and outcome.ranking is None


def test_a_calls_recorded_blame_wins_over_its_type() -> None:
    # Plaid's INVALID_API_KEYS is "auth" by type, but our keys there are Plaid's
    # problem alone (blame provider); a busy-retry 409 is the caller's.
    ours = msgspec.structs.replace(call("plaid", "failure", error_type="auth"), blame="provider")
    early = msgspec.structs.replace(
        call("mx", "failure", error_type="provider_down"), blame="caller"
    )
    health = health_after(*[ours] * 10, *[early] * 10)
    assert health.score("plaid", "US", NOW) < health.score("mx", "US", NOW)

"""When a sync that did not succeed runs again: refusals wait, failures back off, age ends it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events.commands import SyncTransactions
from events.connection import ReauthRequired, RelinkSuggested, SyncDeferred, SyncFailed
from events.errors import ErrorInfo
from services.connections.domain import Attempt, Outcome, decide_outcome, fold
from services.connections.link_health import RelinkPolicy
from services.resilience.retry import DEFAULT_RETRY, RetryPolicy, decide_next_try
from tests.unit.test_connection_domain import registered

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
UNAVAILABLE = ErrorInfo(
    code="all_providers_unavailable",
    message="no linked provider can be called now: plaid: breaker open",
    type="provider_down",
    retryable=True,
)
DOWN = ErrorInfo(
    code="INSTITUTION_DOWN", message="down", type="provider_down", retryable=True, provider="plaid"
)
LOGIN = ErrorInfo(
    code="ITEM_LOGIN_REQUIRED", message="login", type="auth", retryable=False, provider="plaid"
)


def next_try(**overrides: Any) -> Any:
    facts: dict[str, Any] = {
        "error_type": "provider_down",
        "retryable": True,
        "refused": False,
        "retry_after_s": None,
        "tries": 1,
        "received_at": NOW,
        "now": NOW,
        "policies": DEFAULT_RETRY,
        "max_age": DAY,
        "deadline": None,
        "rng": random.Random(7),
    }
    return decide_next_try(**{**facts, **overrides})


def test_a_refusal_waits_until_it_lifts_with_jitter_and_spends_no_try() -> None:
    waits = [
        next_try(refused=True, retry_after_s=60.0, tries=0, rng=random.Random(seed))
        for seed in range(20)
    ]
    assert all(w.refused and w.gave_up is None for w in waits)
    delays = [(w.resume_at - NOW).total_seconds() for w in waits]
    assert all(60.0 <= d <= 75.0 for d in delays)
    assert len(set(delays)) > 1  # jittered: refused together, not back together


def test_a_long_refusal_is_not_stretched_by_more_than_a_minute() -> None:
    wait = next_try(refused=True, retry_after_s=7200.0, tries=0, rng=random.Random(3))
    assert 7200.0 <= (wait.resume_at - NOW).total_seconds() <= 7260.0


def test_a_refusal_is_never_cut_short_by_the_tries_of_its_error_class() -> None:
    spent = {**DEFAULT_RETRY, "provider_down": RetryPolicy(tries=2)}
    assert next_try(refused=True, retry_after_s=5.0, tries=2, policies=spent).resume_at is not None
    assert next_try(refused=False, tries=2, policies=spent).gave_up == "tries_spent"


def test_errors_time_can_fix_keep_backing_off_at_the_cap_until_the_max_age() -> None:
    later = NOW + timedelta(hours=20)
    wait = next_try(tries=500, now=later, rng=random.Random(1))
    assert wait.gave_up is None and wait.resume_at is not None
    assert wait.resume_at - later <= timedelta(seconds=DEFAULT_RETRY["provider_down"].cap_s)


def test_a_retryable_error_past_the_max_age_ends_the_sync() -> None:
    assert next_try(now=NOW + DAY - timedelta(seconds=1), tries=90).gave_up == "max_age"
    assert next_try(refused=True, retry_after_s=60.0, now=NOW + DAY).gave_up == "max_age"


def test_an_error_that_needs_the_person_ends_the_sync_at_once() -> None:
    assert next_try(error_type="auth", retryable=False).gave_up == "not_retryable"
    assert next_try(error_type="validation", retryable=False).gave_up == "not_retryable"


def test_the_commands_own_deadline_wins_when_earlier() -> None:
    deadline = NOW + timedelta(seconds=30)
    assert next_try(refused=True, retry_after_s=60.0, deadline=deadline).gave_up == "deadline"


def sync(command_id: str = "s1") -> SyncTransactions:
    return SyncTransactions(command_id=command_id, space_id="s1", account_id="a1")


REFUSED = Outcome(
    success=False,
    provider=None,
    failover_used=False,
    attempts=(),
    response_time_ms=0.1,
    error=UNAVAILABLE,
    refused=("plaid",),
    retry_after_s=60.0,
)


def test_a_refused_sync_is_deferred_as_refused_and_keeps_its_tries() -> None:
    state = registered("plaid")
    events = decide_outcome(
        state,
        sync(),
        REFUSED,
        now=NOW,
        trace={},
        resume_at=NOW + timedelta(minutes=1),
        refused=True,
        received_at=NOW,
    )
    (deferred,) = events
    assert isinstance(deferred, SyncDeferred)
    assert deferred.refused and deferred.tries == 0 and deferred.waits == 1
    assert deferred.received_at == NOW
    after = fold(state, events)
    assert after is not None
    assert after.tries_made("s1") == 0 and after.waits_made("s1") == 1
    # The same round delivered twice decides nothing the second time.
    again = decide_outcome(after, sync(), REFUSED, now=NOW, trace={}, resume_at=NOW, refused=True)
    assert again == []


def test_a_sync_past_its_max_age_fails_and_a_relink_is_suggested() -> None:
    state = registered("plaid")
    failed = Outcome(
        success=False,
        provider="plaid",
        failover_used=False,
        attempts=(Attempt(provider="plaid", failover=False, response_time_ms=5.0, error=DOWN),),
        response_time_ms=5.0,
        error=DOWN,
    )
    events = decide_outcome(
        state,
        sync(),
        failed,
        now=NOW,
        trace={},
        gave_up="max_age",
        relink=RelinkPolicy(hierarchy={"US": ("plaid", "mx")}),
    )
    relink = next(e for e in events if isinstance(e, RelinkSuggested))
    assert relink.failing_provider == "plaid" and relink.suggested_provider == "mx"
    assert isinstance(events[-1], SyncFailed)


def test_an_auth_error_fails_at_once_with_reauth_required_and_no_relink() -> None:
    state = registered("plaid")
    broken = Outcome(
        success=False,
        provider="plaid",
        failover_used=False,
        attempts=(
            Attempt(
                provider="plaid",
                failover=False,
                response_time_ms=5.0,
                error=LOGIN,
                reauth_required=True,
            ),
        ),
        response_time_ms=5.0,
        error=LOGIN,
    )
    events = decide_outcome(state, sync(), broken, now=NOW, trace={}, gave_up="not_retryable")
    kinds = [type(e) for e in events]
    assert ReauthRequired in kinds and SyncFailed in kinds and RelinkSuggested not in kinds

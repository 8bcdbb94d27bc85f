"""What provider answers say about a link: re-authentication, maintenance, relinking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.commands import RegisterConnection, SyncTransactions
from events.connection import RelinkSuggested
from events.errors import ErrorInfo, ErrorType
from services.connections.domain import (
    Attempt,
    ConnectionState,
    Outcome,
    decide_outcome,
    decide_register,
    fold,
)
from services.connections.link_health import RelinkPolicy

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RELINK = RelinkPolicy(after=timedelta(minutes=30), hierarchy={"US": ("plaid", "mx", "finicity")})


def linked(*providers: str) -> ConnectionState:
    state = None
    for provider in providers:
        cmd = RegisterConnection(
            command_id=f"reg-{provider}",
            space_id="s",
            account_id="a",
            provider=provider,
            item_id=f"item-{provider}",
            access_token="t",
        )
        state = fold(state, decide_register(state, cmd, now=T0, trace={}))
    assert state is not None
    return state


def failed(
    provider: str,
    kind: ErrorType,
    code: str,
    *,
    reauth: bool = False,
    retry_after_s: float | None = None,
) -> Outcome:
    error = ErrorInfo(
        code=code, message=code, type=kind, retryable=kind != "auth", provider=provider
    )
    return Outcome(
        success=False,
        provider=provider,
        failover_used=False,
        response_time_ms=5.0,
        error=error,
        attempts=(
            Attempt(
                provider=provider,
                failover=False,
                response_time_ms=5.0,
                error=error,
                reauth_required=reauth,
                retry_after_s=retry_after_s,
            ),
        ),
        retry_after_s=retry_after_s,
    )


def run(
    state: ConnectionState, outcome: Outcome, at: datetime, n: int
) -> tuple[ConnectionState, list[str]]:
    cmd = SyncTransactions(command_id=f"c{n}", space_id="s", account_id="a")
    events = decide_outcome(state, cmd, outcome, now=at, trace={}, relink=RELINK)
    after = fold(state, events)
    assert after is not None
    return after, [type(e).__name__ for e in events]


def test_a_login_required_error_marks_the_link_for_re_authentication() -> None:
    state, names = run(
        linked("plaid", "mx"), failed("plaid", "auth", "ITEM_LOGIN_REQUIRED", reauth=True), T0, 1
    )
    assert "ReauthRequired" in names
    assert state.reauth == {"plaid"}
    assert state.usable_links(T0) == ["mx"]
    _, again = run(state, failed("plaid", "auth", "ITEM_LOGIN_REQUIRED", reauth=True), T0, 2)
    assert "ReauthRequired" not in again  # said once, not on every failure


def test_registering_the_link_again_clears_re_authentication() -> None:
    state, _ = run(
        linked("plaid"), failed("plaid", "auth", "ITEM_LOGIN_REQUIRED", reauth=True), T0, 1
    )
    cmd = RegisterConnection(
        command_id="relink",
        space_id="s",
        account_id="a",
        provider="plaid",
        item_id="item-plaid",
        access_token="t2",
    )
    state = fold(state, decide_register(state, cmd, now=T0, trace={}))  # type: ignore[assignment]
    assert state.reauth == frozenset() and state.usable_links(T0) == ["plaid"]


def test_maintenance_with_an_end_keeps_the_link_aside_until_then() -> None:
    outcome = failed("plaid", "maintenance", "PLANNED_MAINTENANCE", retry_after_s=600)
    state, names = run(linked("plaid"), outcome, T0, 1)
    assert "MaintenanceDetected" in names
    assert state.maintenance_until["plaid"] == T0 + timedelta(seconds=600)
    assert state.usable_links(T0 + timedelta(seconds=599)) == []
    assert state.usable_links(T0 + timedelta(seconds=600)) == ["plaid"]


def test_a_single_link_down_past_the_threshold_suggests_relinking_once() -> None:
    state = linked("plaid")
    down = failed("plaid", "provider_down", "INSTITUTION_DOWN")
    state, names = run(state, down, T0, 1)
    assert "RelinkSuggested" not in names
    state, names = run(state, down, T0 + timedelta(minutes=29), 2)
    assert "RelinkSuggested" not in names
    before = state
    state, names = run(state, down, T0 + timedelta(minutes=31), 3)
    assert "RelinkSuggested" in names
    events = decide_outcome(
        before,
        SyncTransactions(command_id="c3", space_id="s", account_id="a"),
        down,
        now=T0 + timedelta(minutes=31),
        trace={},
        relink=RELINK,
    )
    (suggestion,) = [e for e in events if isinstance(e, RelinkSuggested)]
    assert suggestion.failing_provider == "plaid" and suggestion.suggested_provider == "mx"
    assert suggestion.down_since == T0
    _, names = run(state, down, T0 + timedelta(minutes=40), 4)
    assert "RelinkSuggested" not in names


def test_no_relink_is_suggested_while_a_backup_link_works() -> None:
    state = linked("plaid", "mx")
    down = failed("plaid", "provider_down", "INSTITUTION_DOWN")
    state, _ = run(state, down, T0, 1)
    _, names = run(state, down, T0 + timedelta(hours=2), 2)
    assert "RelinkSuggested" not in names


def test_a_success_at_the_provider_clears_its_outage_record() -> None:
    state, _ = run(linked("plaid"), failed("plaid", "provider_down", "INSTITUTION_DOWN"), T0, 1)
    assert "plaid" in state.down_since
    ok = Outcome(
        success=True,
        provider="plaid",
        failover_used=False,
        response_time_ms=1.0,
        attempts=(Attempt(provider="plaid", failover=False, response_time_ms=1.0),),
    )
    state, _ = run(state, ok, T0 + timedelta(minutes=5), 2)
    assert state.down_since == {}

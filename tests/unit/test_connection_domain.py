"""The Connection aggregate's decisions, without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from events.base import DomainEvent
from events.commands import RegisterConnection, SyncTransactions
from events.connection import (
    ConnectionAttempted,
    ConnectionRegistered,
    ProviderFailed,
    ProviderLinked,
    SyncCompleted,
    SyncFailed,
)
from events.errors import ErrorInfo
from events.feed import FeedAppended
from services.connections.domain import (
    RECENT_COMMANDS_KEPT,
    Attempt,
    ConnectionState,
    Outcome,
    decide_outcome,
    decide_register,
    fold,
)
from services.connections.state import FeedDraft

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DOWN = ErrorInfo(
    code="INSTITUTION_DOWN", message="down", type="provider_down", retryable=True, provider="plaid"
)


def register(command_id: str, provider: str = "plaid") -> RegisterConnection:
    return RegisterConnection(
        command_id=command_id,
        space_id="s1",
        account_id="a1",
        provider=provider,
        item_id=f"item-{provider}",
        access_token="access-sandbox-secret",
    )


def registered(*providers: str) -> ConnectionState:
    state = None
    for i, provider in enumerate(providers):
        state = fold(state, decide_register(state, register(f"r{i}", provider), now=NOW, trace={}))
    assert state is not None
    return state


def test_first_registration_creates_the_connection_and_its_link() -> None:
    events = decide_register(None, register("r1"), now=NOW, trace={"traceparent": "00-x"})
    assert [type(e) for e in events] == [ConnectionRegistered, ProviderLinked]
    assert [e.originator_version for e in events] == [1, 2]
    assert events[1].metadata == {"traceparent": "00-x", "command_id": "r1"}


def test_a_second_provider_makes_the_connection_multi_homed() -> None:
    state = registered("plaid", "mx")
    assert sorted(state.links) == ["mx", "plaid"]
    assert state.version == 3


def test_a_new_token_at_a_linked_provider_says_which_link_it_replaces() -> None:
    state = registered("plaid", "mx")
    old = state.links["plaid"]
    (linked,) = decide_register(state, register("r-again", "plaid"), now=NOW, trace={})
    assert isinstance(linked, ProviderLinked)
    assert linked.replaces_credential_id == old.credential_id != linked.credential_id
    assert linked.replaces_item_id == old.item_id
    (first,) = decide_register(registered("mx"), register("r-plaid"), now=NOW, trace={})
    assert isinstance(first, ProviderLinked) and first.replaces_credential_id is None


def test_registration_events_never_carry_the_access_token() -> None:
    events = decide_register(None, register("r1"), now=NOW, trace={})
    assert all("access-sandbox-secret" not in repr(e) for e in events)


def test_a_repeated_registration_decides_nothing() -> None:
    state = registered("plaid")
    assert decide_register(state, register("r0"), now=NOW, trace={}) == []


def test_a_failover_records_both_attempts_the_failure_and_the_completion() -> None:
    state = registered("plaid", "mx")
    outcome = Outcome(
        success=True,
        provider="mx",
        failover_used=True,
        response_time_ms=12.0,
        attempts=(
            Attempt(provider="plaid", failover=False, response_time_ms=5.0, error=DOWN),
            Attempt(provider="mx", failover=True, response_time_ms=7.0),
        ),
        summary={"added": 3},
    )
    cmd = SyncTransactions(command_id="s1", space_id="s1", account_id="a1")
    events = decide_outcome(state, cmd, outcome, now=NOW, trace={})
    assert [type(e) for e in events] == [
        ConnectionAttempted,
        ProviderFailed,
        ConnectionAttempted,
        SyncCompleted,
    ]
    assert [e.originator_version for e in events] == [4, 5, 6, 7]
    first, _, second, done = events
    assert isinstance(first, ConnectionAttempted) and first.outcome == "failure"
    assert isinstance(second, ConnectionAttempted) and second.failover
    assert isinstance(done, SyncCompleted) and done.failover_used and done.attempts == 2
    after = fold(state, events)
    assert after is not None and after.recent_results["s1"].provider == "mx"
    assert decide_outcome(after, cmd, outcome, now=NOW, trace={}) == []


def test_a_failed_command_ends_with_sync_failed_carrying_the_error() -> None:
    state = registered("plaid")
    outcome = Outcome(
        success=False,
        provider="plaid",
        failover_used=False,
        response_time_ms=5.0,
        attempts=(Attempt(provider="plaid", failover=False, response_time_ms=5.0, error=DOWN),),
        error=DOWN,
    )
    cmd = SyncTransactions(command_id="s2", space_id="s1", account_id="a1")
    events = decide_outcome(state, cmd, outcome, now=NOW, trace={})
    assert isinstance(events[-1], SyncFailed)
    assert events[-1].error == DOWN


def test_only_the_most_recent_commands_are_remembered() -> None:
    state = registered("plaid")
    outcome = Outcome(
        success=True, provider="plaid", failover_used=False, response_time_ms=1.0, attempts=()
    )
    for i in range(RECENT_COMMANDS_KEPT + 5):
        cmd = SyncTransactions(command_id=f"c{i}", space_id="s1", account_id="a1")
        state = fold(state, decide_outcome(state, cmd, outcome, now=NOW, trace={}))  # type: ignore[assignment]
    assert len(state.recent_results) == RECENT_COMMANDS_KEPT
    assert "c0" not in state.recent_results
    assert f"c{RECENT_COMMANDS_KEPT + 4}" in state.recent_results


def _walked(state: ConnectionState, command_id: str, draft: FeedDraft) -> list[DomainEvent]:
    outcome = Outcome(
        success=True,
        provider="plaid",
        failover_used=False,
        response_time_ms=3.0,
        attempts=(Attempt(provider="plaid", failover=False, response_time_ms=3.0),),
    )
    cmd = SyncTransactions(command_id=command_id, space_id="s1", account_id="a1")
    return decide_outcome(state, cmd, outcome, now=NOW, trace={}, feed=draft)


def test_a_walk_that_finds_nothing_new_records_no_feed_event() -> None:
    state = registered("plaid")
    moved = FeedDraft(provider="plaid", cursor="c-1", has_more=False, base_position=0)
    first = _walked(state, "s1", moved)
    # The cursor moved: recorded, so the next walk starts from it.
    assert [type(e) for e in first] == [ConnectionAttempted, FeedAppended, SyncCompleted]
    after_first = fold(state, first)
    assert after_first is not None and after_first.cursors["plaid"] == "c-1"
    state = after_first

    again = _walked(state, "s2", moved)
    # Same cursor, no entries, nothing held: a FeedAppended would change nothing.
    assert [type(e) for e in again] == [ConnectionAttempted, SyncCompleted]
    done = again[-1]
    assert isinstance(done, SyncCompleted)
    assert done.summary["feed_from"] == 1 and done.summary["feed_to"] == 0
    assert fold(state, again) is not None

    held = msgspec.structs.replace(moved, held=("pending-1",))
    # Holding a pending id's removal for the next walk is a change: recorded.
    assert FeedAppended in [type(e) for e in _walked(state, "s3", held)]

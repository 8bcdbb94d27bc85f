"""Circuit breakers: thresholds, probes and races, with time injected (nothing sleeps)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from events.base import DomainEvent
from events.breaker import BreakerOpened
from events.connection import ConnectionAttempted
from services.resilience.board import BreakerBoard, BreakerRecorder, call_key
from services.resilience.domain import Breaker
from services.resilience.policy import BreakerPolicy, PolicyBook

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class MemoryRecorder(BreakerRecorder):
    """An event store in a dict, with the same version check as the real one."""

    def __init__(self) -> None:
        self.streams: dict[UUID, list[DomainEvent]] = {}

    async def append(self, events: list[DomainEvent]) -> bool:
        await asyncio.sleep(0)  # let racing callers interleave, as a real round trip would
        stream = self.streams.setdefault(events[0].originator_id, [])
        if events[0].originator_version != len(stream) + 1:
            return False
        stream.extend(events)
        return True

    async def load(self, breaker: Breaker) -> list[DomainEvent]:
        return list(self.streams.get(breaker.id, []))

    def recorded(self) -> list[str]:
        return [type(e).__name__ for stream in self.streams.values() for e in stream]


def attempt(
    clock: Clock,
    command_id: str,
    *,
    ok: bool,
    error_type: str = "provider_down",
    response_ms: float = 10.0,
    region: str = "US",
    space_id: str | None = None,
) -> ConnectionAttempted:
    return ConnectionAttempted(
        originator_id=UUID(int=1),
        originator_version=1,
        timestamp=clock(),
        command_id=command_id,
        op="sync.transactions",
        provider="plaid",
        region=region,
        attempt=1,
        failover=False,
        outcome="success" if ok else "failure",
        response_time_ms=response_ms,
        error_code=None if ok else "INSTITUTION_DOWN",
        error_type=None if ok else error_type,
        space_id=space_id,
    )


def board_with(policy: BreakerPolicy | None = None) -> tuple[BreakerBoard, MemoryRecorder, Clock]:
    recorder, clock = MemoryRecorder(), Clock()
    return (
        BreakerBoard(recorder, PolicyBook(default=policy or BreakerPolicy()), clock),
        recorder,
        clock,
    )


async def fail(board: BreakerBoard, clock: Clock, n: int, start: int = 0, **kw: object) -> None:
    for i in range(start, start + n):
        await board.observe(attempt(clock, f"f{i}", ok=False, **kw))  # type: ignore[arg-type]
        clock.advance(1)


async def test_the_breaker_opens_on_exactly_the_fifth_failure_within_the_window() -> None:
    board, recorder, clock = board_with()
    await fail(board, clock, 4)
    assert board.status("plaid", "US") == "closed"
    await fail(board, clock, 1, start=4)
    assert board.status("plaid", "US") == "open"
    (opened,) = [e for s in recorder.streams.values() for e in s]
    assert isinstance(opened, BreakerOpened)
    assert [c.command_id for c in opened.calls] == ["f0", "f1", "f2", "f3", "f4"]
    assert "5 failures" in opened.reason


async def test_failures_older_than_the_window_do_not_count() -> None:
    board, _, clock = board_with()
    await fail(board, clock, 4)
    clock.advance(301)
    await fail(board, clock, 4, start=4)
    assert board.status("plaid", "US") == "closed"


async def test_validation_and_auth_errors_never_open_the_breaker() -> None:
    board, _, clock = board_with()
    await fail(board, clock, 10, error_type="validation")
    await fail(board, clock, 10, start=10, error_type="auth")
    assert board.status("plaid", "US") == "closed"


async def test_an_open_breaker_refuses_calls_with_its_reason_until_the_timeout() -> None:
    board, _, clock = board_with()
    await fail(board, clock, 5)
    permit = await board.permit("plaid", "US", "c1")
    assert not permit.allowed
    assert "open until" in permit.reason and "5 failures" in permit.reason
    clock.advance(58)  # opened at the fifth failure, one tick ago: 1 s short of 60
    assert not (await board.permit("plaid", "US", "c2")).allowed
    clock.advance(1)
    assert (await board.permit("plaid", "US", "c3")).probe


async def test_half_open_lets_exactly_one_probe_through_among_fifty_concurrent_commands() -> None:
    board, recorder, clock = board_with()
    await fail(board, clock, 5)
    clock.advance(61)
    permits = await asyncio.gather(*(board.permit("plaid", "US", f"p{i}") for i in range(50)))
    assert sum(p.allowed for p in permits) == 1
    assert sum(p.probe for p in permits) == 1
    assert recorder.recorded().count("BreakerHalfOpened") == 1
    assert recorder.recorded().count("BreakerProbeAdmitted") == 1


async def test_two_probe_successes_close_the_breaker() -> None:
    board, recorder, clock = board_with()
    await fail(board, clock, 5)
    clock.advance(61)
    for probe in ("p1", "p2"):
        assert (await board.permit("plaid", "US", probe)).probe
        await board.observe(attempt(clock, probe, ok=True))
    assert board.status("plaid", "US") == "closed"
    assert recorder.recorded()[-1] == "BreakerClosed"
    clock.advance(30)  # past the ramp (1/8, 1/4, 1/2 of commands, then all)
    assert (await board.permit("plaid", "US", "after")).allowed


async def test_a_failed_probe_reopens_the_breaker_for_another_timeout() -> None:
    board, recorder, clock = board_with()
    await fail(board, clock, 5)
    clock.advance(61)
    assert (await board.permit("plaid", "US", "p1")).probe
    await board.observe(attempt(clock, "p1", ok=False))
    assert board.status("plaid", "US") == "open"
    assert recorder.recorded() == [
        "BreakerOpened",
        "BreakerHalfOpened",
        "BreakerProbeAdmitted",
        "BreakerOpened",
    ]


async def test_two_replicas_racing_record_each_transition_once() -> None:
    recorder, clock = MemoryRecorder(), Clock()
    boards = [BreakerBoard(recorder, PolicyBook(), clock) for _ in range(2)]
    for i in range(5):  # both replicas read the same log, in the same order
        event = attempt(clock, f"f{i}", ok=False)
        await asyncio.gather(*(b.observe(event) for b in boards))
    assert recorder.recorded() == ["BreakerOpened"]
    assert [b.status("plaid", "US") for b in boards] == ["open", "open"]
    clock.advance(61)
    await asyncio.gather(*(b.tick() for b in boards))
    assert recorder.recorded() == ["BreakerOpened", "BreakerHalfOpened"]
    permits = await asyncio.gather(
        *(b.permit("plaid", "US", f"p{i}") for i, b in enumerate(boards))
    )
    assert sum(p.allowed for p in permits) == 1


async def test_a_replica_that_starts_late_loads_the_breaker_as_recorded() -> None:
    board, recorder, clock = board_with()
    await fail(board, clock, 5)
    late = BreakerBoard(recorder, PolicyBook(), clock)
    assert not (await late.permit("plaid", "US", "c")).allowed
    assert late.status("plaid", "US") == "open"


async def test_a_failure_rate_over_a_count_window_opens_after_the_minimum_calls() -> None:
    policy = BreakerPolicy(
        window_kind="count",
        window_calls=10,
        failure_threshold=None,
        failure_rate=0.5,
        minimum_calls=10,
    )
    board, _, clock = board_with(policy)
    for i in range(9):
        await board.observe(attempt(clock, f"c{i}", ok=i % 2 == 0))
    assert board.status("plaid", "US") == "closed"  # 4 of 9 failed, and under the minimum
    await board.observe(attempt(clock, "c9", ok=False))
    assert board.status("plaid", "US") == "open"  # 5 of 10


async def test_slow_calls_open_the_breaker_when_configured() -> None:
    policy = BreakerPolicy(
        failure_threshold=None, slow_call_ms=2000, slow_call_rate=0.8, minimum_calls=5
    )
    board, _, clock = board_with(policy)
    for i in range(5):
        await board.observe(attempt(clock, f"s{i}", ok=True, response_ms=2500))
    assert board.status("plaid", "US") == "open"


async def test_a_probe_that_never_called_stops_blocking_after_the_probe_timeout() -> None:
    board, _, clock = board_with()
    await fail(board, clock, 5)
    clock.advance(61)
    assert (await board.permit("plaid", "US", "lost-probe")).probe  # then rate-limited, or killed
    refused = await board.permit("plaid", "US", "p2")
    # Asked back after one ramp interval: the probe usually answers far sooner.
    assert not refused.allowed and refused.retry_after_s == 10.0
    clock.advance(31)
    assert (await board.permit("plaid", "US", "p3")).probe


async def test_an_open_breaker_says_when_it_will_half_open() -> None:
    board, _, clock = board_with()
    await fail(board, clock, 5)
    permit = await board.permit("plaid", "US", "c")
    assert permit.retry_after_s == pytest.approx(59.0)


async def test_a_probe_is_told_apart_from_the_same_command_id_in_another_space() -> None:
    board, recorder, clock = board_with()
    await fail(board, clock, 5)
    clock.advance(61)
    assert (await board.permit("plaid", "US", call_key("space-a", "sync-1"))).probe
    # Space b's own sync-1 (sent before the breaker opened) fails only now: it is
    # not the probe, so it neither reopens the breaker nor answers for the probe.
    await board.observe(attempt(clock, "sync-1", ok=False, space_id="space-b"))
    assert board.status("plaid", "US") == "half_open"
    await board.observe(attempt(clock, "sync-1", ok=True, space_id="space-a"))
    assert (await board.permit("plaid", "US", call_key("space-a", "sync-2"))).probe
    await board.observe(attempt(clock, "sync-2", ok=True, space_id="space-a"))
    assert board.status("plaid", "US") == "closed"
    assert recorder.recorded().count("BreakerOpened") == 1


def test_a_call_key_names_the_space_and_never_joins_two_pairs() -> None:
    assert call_key("demo", "sync-1") == "demo/sync-1"
    assert call_key("a/b", "c") != call_key("a", "b/c")

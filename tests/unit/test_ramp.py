"""The ramp after a breaker closes: waiting work reaches the provider doubling each interval."""

from __future__ import annotations

import collections
import heapq
import random
from datetime import datetime, timedelta

import pytest

from services.resilience.board import HELD_CHECK_BACK_MAX_S, BreakerBoard, held_check_back_s
from services.resilience.policy import BreakerPolicy, PolicyBook
from services.resilience.ramp import ramp_share, ramp_wait_s
from services.resilience.retry import refusal_delay_s
from tests.unit.test_breakers import T0, Clock, MemoryRecorder, attempt, board_with, fail

pytestmark = pytest.mark.unit
POLICY = BreakerPolicy()  # 1/8 of commands, doubling every 10 s


async def closed_after_probes(board: BreakerBoard, clock: Clock) -> None:
    await fail(board, clock, 5)
    clock.advance(61)
    for probe in ("p1", "p2"):
        assert (await board.permit("plaid", "US", probe)).probe
        await board.observe(attempt(clock, probe, ok=True))
    assert board.status("plaid", "US") == "closed"


def test_the_share_let_through_doubles_each_interval_up_to_everyone() -> None:
    shares = [ramp_share(T0, T0 + timedelta(seconds=10 * i + 1), POLICY) for i in range(5)]
    assert shares == [0.125, 0.25, 0.5, 1.0, 1.0]


def test_a_command_held_by_the_ramp_is_told_when_its_place_opens() -> None:
    held = [f"c{i}" for i in range(200) if ramp_wait_s(f"c{i}", T0, T0, POLICY) is not None]
    assert held
    for command_id in held:
        wait = ramp_wait_s(command_id, T0, T0, POLICY)
        assert wait is not None and wait in (10.0, 20.0, 30.0)
        assert ramp_wait_s(command_id, T0, T0 + timedelta(seconds=wait), POLICY) is None


async def test_a_queue_of_waiting_syncs_reaches_the_provider_on_a_ramp() -> None:
    board, _, clock = board_with()
    await closed_after_probes(board, clock)
    closed_at = clock()
    # 800 syncs waited behind the breaker; all come back the moment it closes,
    # and each one refused comes back when the board says.
    queue = [(closed_at, f"waiting-{i}") for i in range(800)]
    let_through: collections.Counter[int] = collections.Counter()
    while queue:
        at, command_id = heapq.heappop(queue)
        clock.now = at
        permit = await board.permit("plaid", "US", command_id)
        if permit.allowed:
            let_through[int((at - closed_at).total_seconds() // 10)] += 1
        else:
            assert permit.retry_after_s is not None and "ramping up" in permit.reason
            heapq.heappush(queue, (at + timedelta(seconds=permit.retry_after_s), command_id))
    per_interval = [let_through[i] for i in range(4)]
    assert sum(per_interval) == 800  # everyone gets through within the ramp
    # About 100, 100, 200, 400: the first interval gets an eighth, not the herd.
    assert 60 <= per_interval[0] <= 140
    assert per_interval[0] + per_interval[1] <= 0.25 * 800 * 1.3
    assert per_interval[3] > per_interval[2] > per_interval[1]


async def test_replicas_reading_the_same_events_let_the_same_commands_through() -> None:
    recorder, clock = MemoryRecorder(), Clock()
    boards = [BreakerBoard(recorder, PolicyBook(), clock) for _ in range(2)]
    await closed_after_probes(boards[0], clock)  # the second replica loads it from the store
    clock.advance(5)
    answers = [
        [(await b.permit("plaid", "US", f"c{i}")).allowed for i in range(100)] for b in boards
    ]
    assert answers[0] == answers[1] and 0 < sum(answers[0]) < 100


async def test_a_person_waiting_is_let_past_the_ramp_but_not_past_an_open_breaker() -> None:
    board, _, clock = board_with()
    await closed_after_probes(board, clock)
    clock.advance(1)
    background = [(await board.permit("plaid", "US", f"c{i}")).allowed for i in range(100)]
    assert not all(background)  # the ramp holds most of a herd back
    assert all(
        [(await board.permit("plaid", "US", f"l{i}", ramped=False)).allowed for i in range(20)]
    )
    await fail(board, clock, 5)
    assert board.status("plaid", "US") == "open"
    assert not (await board.permit("plaid", "US", "l-open", ramped=False)).allowed


async def test_a_breaker_that_never_opened_has_no_ramp() -> None:
    board, _, _ = board_with()
    assert all([(await board.permit("plaid", "US", f"c{i}")).allowed for i in range(50)])


@pytest.mark.parametrize("end", ["released early by an operator", "expired"])
async def test_syncs_held_behind_a_forced_open_breaker_come_back_on_a_ramp_once_it_ends(
    end: str,
) -> None:
    board, _, clock = board_with()
    rng = random.Random(7)
    await board.force(
        "plaid", "US", None, state="open", duration_s=1800, actor="ops", reason="incident",
        command_id="hold",
    )  # fmt: skip
    # 800 syncs arrive over the hold's first ten minutes; each one refused waits as the
    # sync handler's deferral makes it wait (until the refusal lifts, plus its jitter).
    backlog = [(T0 + timedelta(seconds=0.75 * i), f"held-{i}") for i in range(800)]
    heapq.heapify(backlog)
    end_at = T0 + timedelta(seconds=1200 if end == "expired" else 900)
    ended_at: datetime | None = None
    admitted: dict[str, datetime] = {}
    while backlog:
        at, command_id = heapq.heappop(backlog)
        if ended_at is None and at >= end_at and end != "expired":
            clock.now = ended_at = end_at
            await board.release("plaid", "US", None, actor="ops", reason="over", command_id="r")
        clock.now = at
        permit = await board.permit("plaid", "US", command_id)
        if not permit.allowed:
            wait = refusal_delay_s(permit.retry_after_s, rng)
            heapq.heappush(backlog, (at + timedelta(seconds=wait), command_id))
            continue
        assert command_id not in admitted, f"{command_id} let through twice"
        admitted[command_id] = at
        if ended_at is None:  # the hold expired: the first permit after it released it
            ended_at = at
    assert ended_at is not None and board.status("plaid", "US") == "closed"
    assert len(admitted) == 800 and min(admitted.values()) >= ended_at  # none lost, none early
    since_end = collections.Counter(
        int((at - ended_at).total_seconds() // 10) for at in admitted.values()
    )
    # The first interval after the hold ends lets through at most the ramp's first
    # share of the backlog, not the herd; and the backlog is back within the ramp
    # plus one check-back (a quarter of the hold's age then, jittered).
    assert since_end[0] <= 0.125 * 800 * 1.3, sorted(since_end.items())
    held_for = (ended_at - T0).total_seconds()
    check_back = held_check_back_s(held_for, PolicyBook().for_("plaid", "US").open_timeout_s)
    assert max(since_end) < (30 + check_back * 1.25) // 10 + 1, sorted(since_end.items())


def test_a_held_sync_asks_again_less_often_the_longer_the_hold_has_lasted() -> None:
    assert held_check_back_s(0, 60) == 60  # as behind a breaker its calls opened
    assert held_check_back_s(600, 60) == 150  # a quarter of the hold's age
    assert held_check_back_s(86_400, 60) == HELD_CHECK_BACK_MAX_S
    assert held_check_back_s(0, 1800) == 1800  # never sooner than one open timeout
    # A day-long hold: ~100 asks per held sync, not one a minute (1,440).
    held_for, asks = 0.0, 0
    while held_for < 86_400:
        held_for += held_check_back_s(held_for, 60)
        asks += 1
    assert asks <= 110, asks


async def test_ending_a_hold_closed_starts_no_ramp_for_nothing_waited() -> None:
    board, _, clock = board_with()
    await board.force(
        "plaid", "US", None, state="closed", duration_s=600, actor="ops", reason="status page lies",
        command_id="hold",
    )  # fmt: skip
    clock.advance(60)
    await board.release("plaid", "US", None, actor="ops", reason="over", command_id="r")
    assert all([(await board.permit("plaid", "US", f"c{i}")).allowed for i in range(50)])

"""The worker's in-progress acks: one timer for every running command (infra/worker.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from infra.worker import InProgress

pytestmark = pytest.mark.unit


class FakeMsg:
    """Stands in for a JetStream message: counts its in-progress acks."""

    def __init__(self, fails: bool = False) -> None:
        self.in_progress_acks = 0
        self.fails = fails

    async def in_progress(self) -> None:
        self.in_progress_acks += 1
        if self.fails:
            raise ConnectionError("nats is away")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def msg(fake: FakeMsg) -> Msg:
    return cast("Msg", cast("Any", fake))


async def test_a_command_running_a_period_or_longer_is_told_in_progress_until_it_ends() -> None:
    clock = Clock()
    working = InProgress(10.0, clock)
    long, short = FakeMsg(), FakeMsg()
    working.add(msg(long))
    clock.now = 8.0
    working.add(msg(short))
    clock.now = 10.0
    await working.tick()
    # The long one ran a whole period; the short one started 2 s ago: not yet.
    assert (long.in_progress_acks, short.in_progress_acks) == (1, 0)
    clock.now = 20.0
    await working.tick()
    assert (long.in_progress_acks, short.in_progress_acks) == (2, 1)
    working.discard(msg(long))
    working.discard(msg(long))  # finishing twice is harmless
    clock.now = 30.0
    await working.tick()
    assert (long.in_progress_acks, short.in_progress_acks) == (2, 2)
    assert len(working) == 1


async def test_an_ack_that_cannot_be_sent_does_not_stop_the_others() -> None:
    clock = Clock()
    working = InProgress(1.0, clock)
    away, fine = FakeMsg(fails=True), FakeMsg()
    working.add(msg(away))
    working.add(msg(fine))
    clock.now = 1.0
    await working.tick()
    assert (away.in_progress_acks, fine.in_progress_acks) == (1, 1)

"""`unless_stopped`: a step of the start that a stop signal abandons (infra/waiting.py)."""

from __future__ import annotations

import asyncio

import pytest

from infra.waiting import StoppedWhileStartingError, unless_stopped

pytestmark = pytest.mark.unit


async def test_a_step_that_finishes_gives_its_result() -> None:
    async def step() -> str:
        return "connected"

    assert await unless_stopped(step(), asyncio.Event(), "connecting") == "connected"


async def test_a_step_that_never_ends_is_cancelled_by_the_stop_and_says_what_it_was_doing() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    asyncio.get_running_loop().call_soon(stop.set)
    with pytest.raises(StoppedWhileStartingError, match="stopped while connecting to NATS"):
        await unless_stopped(forever(), stop, "connecting to NATS")
    assert cancelled.is_set()


async def test_a_step_that_fails_raises_its_own_error() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError

    with pytest.raises(ConnectionRefusedError):
        await unless_stopped(refused(), asyncio.Event(), "connecting")


async def test_without_a_stop_event_the_step_is_awaited_as_is() -> None:
    async def step() -> int:
        return 7

    assert await unless_stopped(step(), None, "anything") == 7

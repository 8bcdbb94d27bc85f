"""Small waits that a stop signal can always cut short."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


class StoppedWhileStartingError(RuntimeError):
    """A stop signal came before a step of the start finished (e.g. NATS never answered)."""


async def wait_for_stop(stop: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)


async def wait_for_either(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def unless_stopped(step: Awaitable[_T], stop: asyncio.Event | None, doing: str) -> _T:
    """``await step``, abandoned (cancelled) if ``stop`` is set first.

    For the steps of a start that may wait for ever, such as a NATS client that
    retries an unreachable server without end: a SIGTERM then stops the process
    instead of being ignored until an orchestrator SIGKILLs it. Abandoned, it
    raises ``StoppedWhileStartingError`` saying what it was ``doing``.
    """
    if stop is None:
        return await step
    task = asyncio.ensure_future(step)
    stopper = asyncio.ensure_future(stop.wait())
    abandoned = False
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            abandoned = True
            task.cancel()
            # Whatever it raises while it unwinds, it was stopped: that is the news.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if abandoned:
        raise StoppedWhileStartingError(f"stopped while {doing}")
    return task.result()

"""Which signals stop `up` and `serve` in order (infra/cli.py)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from infra.cli import _install_stop_signals

pytestmark = pytest.mark.unit

STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def _stopped_by(sig: signal.Signals) -> bool:
    """Whether `sig` sets the stop; the process's handlers are as they were after."""
    before = {stop_signal: signal.getsignal(stop_signal) for stop_signal in STOPS}
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        _install_stop_signals(stop)
        os.kill(os.getpid(), sig)
        try:
            await asyncio.wait_for(stop.wait(), 2)
        except TimeoutError:
            return False
        return True
    finally:
        for stop_signal, handler in before.items():
            loop.remove_signal_handler(stop_signal)
            signal.signal(stop_signal, handler)


async def test_a_hung_up_terminal_stops_us_in_order() -> None:
    assert await _stopped_by(signal.SIGHUP)


async def test_under_nohup_a_hung_up_terminal_does_not() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup hands down
    assert not await _stopped_by(signal.SIGHUP)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN

"""A NATS connection's troubles in the log: one line each, repeats counted, not a traceback each."""

from __future__ import annotations

import logging

import pytest

from infra.nats_logging import REPEAT_EVERY_S, ConnectionLog

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_repeated_error_is_said_once_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    said = ConnectionLog("worker", clock=clock)
    caplog.set_level(logging.WARNING, logger="infra.nats_logging")
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4222)")
    for _ in range(10):
        await said.on_error(refused)
        clock.now += 2.0
    assert len(caplog.records) == 1
    assert "worker" in caplog.messages[0] and "Connect call failed" in caplog.messages[0]
    assert all(record.exc_info is None for record in caplog.records)

    clock.now = REPEAT_EVERY_S + 1
    await said.on_error(refused)
    assert len(caplog.records) == 2
    assert "10 more times" in caplog.messages[1]


async def test_a_new_error_is_said_at_once(caplog: pytest.LogCaptureFixture) -> None:
    said = ConnectionLog("relay", clock=Clock())
    caplog.set_level(logging.WARNING, logger="infra.nats_logging")
    await said.on_error(ConnectionRefusedError("refused"))
    await said.on_error(TimeoutError())
    assert len(caplog.records) == 2
    assert caplog.messages[1] == "NATS (relay): TimeoutError"


async def test_losing_and_regaining_the_connection_are_said_with_what_went_unsaid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    said = ConnectionLog("worker", clock=Clock())
    caplog.set_level(logging.WARNING, logger="infra.nats_logging")
    await said.on_disconnected()
    for _ in range(3):
        await said.on_error(ConnectionRefusedError("refused"))
    await said.on_reconnected()
    assert caplog.messages == [
        "NATS (worker): connection lost; reconnecting",
        "NATS (worker): ConnectionRefusedError: refused",
        "NATS (worker): ConnectionRefusedError: refused (2 more times before the connection "
        "came back)",
        "NATS (worker): reconnected",
    ]
    # After the return, the same error is news again.
    await said.on_error(ConnectionRefusedError("refused"))
    assert caplog.messages[-1] == "NATS (worker): ConnectionRefusedError: refused"


async def test_a_permissions_violation_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    said = ConnectionLog("worker", clock=Clock())
    caplog.set_level(logging.WARNING, logger="infra.nats_logging")
    await said.on_error(Exception('nats: permissions violation for publish to "syncyard.evt.x"'))
    await said.on_error(ConnectionRefusedError("refused"))
    assert [record.levelno for record in caplog.records] == [logging.ERROR, logging.WARNING]


class Closing:
    is_closed = False
    is_draining = True


async def test_a_close_syncyard_asked_for_is_not_a_lost_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    said = ConnectionLog("worker", clock=Clock())
    caplog.set_level(logging.INFO, logger="infra.nats_logging")
    said.watch(Closing())
    await said.on_disconnected()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "NATS (worker): connection closed")
    ]

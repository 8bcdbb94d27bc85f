"""A command that keeps failing is dead-lettered with its reason, not retried forever."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from events.commands import Command
from events.results import CommandResult
from infra.streams import WORKER_CONSUMER, declare_streams
from infra.worker import CommandWorker
from tests.support import bus
from tests.support.harness import client, decode_json, eventually, stream_messages, sync

pytestmark = pytest.mark.integration


async def always_failing(cmd: Command, trace: dict[str, str]) -> CommandResult:
    raise RuntimeError("the database said no")


async def test_a_command_failing_every_delivery_goes_to_the_dlq_after_the_last_one(
    nats_url: str, clean_jetstream: None
) -> None:
    nc = await bus.connect(nats_url, bus.WORKER)
    js = nc.jetstream()
    await declare_streams(js)
    worker = CommandWorker(nc, js, always_failing, consumer=WORKER_CONSUMER, max_deliver=3)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        async with client(nats_url) as upstream:
            await upstream.publish(sync("acct-poison", "poison-1"))
            result = await upstream.result("poison-1", timeout=30)
        assert not result.success and result.error is not None
        assert result.error.code == "delivery_exhausted"
        assert "the database said no" in result.error.message

        letters = await eventually(
            lambda: stream_messages(nats_url, "syncyard.dlq.>"), lambda msgs: len(msgs) == 1
        )
        letter = decode_json(letters[0].data)
        assert letter["deliveries"] == 3 and letter["command_id"] == "poison-1"
        info = await js.stream_info("SYNCYARD_CMD")
        assert info.state.messages == 0  # acked once dead-lettered: no endless redelivery
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await nc.drain()

"""The JetStream streams as declared: dead letters are not kept forever, and a command queue
made by an older syncyard takes commands on their space's subject and loses its duplicate
window."""

from __future__ import annotations

import pytest
from nats.js.api import ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from events.codec import encode
from events.subjects import (
    COMMAND_PREFIX,
    COMMAND_STREAM,
    DLQ_PREFIX,
    DLQ_STREAM,
    HEADER_MSG_ID,
    command_msg_id,
    space_command_subject,
)
from infra.streams import DEAD_LETTER_MAX_AGE_S, WORKER_CONSUMER, declare_streams
from tests.support import bus
from tests.support.harness import sync

pytestmark = pytest.mark.integration


async def test_a_dead_letter_stream_made_without_a_maximum_age_gets_one_on_start(
    nats_url: str, clean_jetstream: None
) -> None:
    nc = await bus.connect(nats_url, bus.WORKER)  # the role that declares streams
    try:
        js = nc.jetstream()
        # As syncyard declared it before dead letters had a maximum age.
        await js.add_stream(
            StreamConfig(
                name=DLQ_STREAM,
                subjects=[f"{DLQ_PREFIX}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
            )
        )

        await declare_streams(js)
        assert (await js.stream_info(DLQ_STREAM)).config.max_age == DEAD_LETTER_MAX_AGE_S

        await declare_streams(js, dead_letter_max_age_s=3600.0)
        assert (await js.stream_info(DLQ_STREAM)).config.max_age == 3600.0
    finally:
        await nc.drain()


async def test_a_command_queue_made_before_space_subjects_takes_them_on_start(
    nats_url: str, clean_jetstream: None
) -> None:
    nc = await bus.connect(nats_url, bus.WORKER)
    upstream = await bus.connect(nats_url, bus.UPSTREAM)
    try:
        js = nc.jetstream()
        # As syncyard declared them when commands came on syncyard.cmd.<op> alone.
        await js.add_stream(
            StreamConfig(
                name=COMMAND_STREAM,
                subjects=[f"{COMMAND_PREFIX}.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            )
        )
        await js.add_consumer(
            COMMAND_STREAM,
            ConsumerConfig(durable_name=WORKER_CONSUMER, filter_subject=f"{COMMAND_PREFIX}.>"),
        )

        await declare_streams(js)

        command = sync("acct-upgraded", "sync-1", space_id="acme.eu")
        await upstream.jetstream().publish(
            space_command_subject(command.space_id, command.op), encode(command)
        )
        taken = await js.pull_subscribe_bind(WORKER_CONSUMER, COMMAND_STREAM)
        [msg] = await taken.fetch(1, timeout=5)
        assert msg.subject == "syncyard.space.acme%2Eeu.cmd.sync.transactions"
        await msg.ack()
    finally:
        await upstream.drain()
        await nc.drain()


async def test_a_command_queue_made_with_a_duplicate_window_keeps_none_after_start(
    nats_url: str, clean_jetstream: None
) -> None:
    nc = await bus.connect(nats_url, bus.WORKER)
    upstream = await bus.connect(nats_url, bus.UPSTREAM)
    try:
        js = nc.jetstream()
        # As syncyard declared it when JetStream dropped resent commands for 2 minutes.
        await js.add_stream(
            StreamConfig(
                name=COMMAND_STREAM,
                subjects=[f"{COMMAND_PREFIX}.>", "syncyard.space.*.cmd.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )
        command = sync("acct-upgraded", "sync-1", space_id="globex")
        msg_id = {HEADER_MSG_ID: command_msg_id("globex", "sync-1")}
        squatted = await upstream.jetstream().publish(
            space_command_subject("acme.eu", command.op), encode(command), headers=msg_id
        )

        await declare_streams(js)

        assert not (await js.stream_info(COMMAND_STREAM)).config.duplicate_window
        # The id taken before the upgrade is forgotten with the window, and a resend
        # is kept too: the worker, not JetStream, recognises it.
        acks = [
            await upstream.jetstream().publish(
                space_command_subject("globex", command.op), encode(command), headers=msg_id
            )
            for _ in range(2)
        ]
        assert [ack.duplicate for ack in acks] == [None, None]
        assert [ack.seq for ack in acks] == [squatted.seq + 1, squatted.seq + 2]
    finally:
        await upstream.drain()
        await nc.drain()

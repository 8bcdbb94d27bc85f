"""The JetStream streams as declared: dead letters are not kept forever."""

from __future__ import annotations

import pytest
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from events.subjects import DLQ_PREFIX, DLQ_STREAM
from infra.streams import DEAD_LETTER_MAX_AGE_S, declare_streams
from tests.support import bus

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

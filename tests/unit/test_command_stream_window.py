"""The command queue's duplicate window: none where nats-server allows it (2.14 on, a
stream with a source), its least (100 ms) and a warning where it keeps one anyway."""

from __future__ import annotations

import dataclasses
import logging
from typing import cast

import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig, StreamInfo, StreamState

from events.subjects import COMMAND_NO_DEDUPE_STREAM, COMMAND_STREAM
from infra.streams import (
    COMMAND_FALLBACK_DUPLICATE_WINDOW_S,
    declare_streams,
    stream_configs,
)

pytestmark = pytest.mark.unit


class FakeJetStream:
    """Streams as a nats-server keeps them: `default_window` for a stream declared with
    none (0), as nats-server before 2.14 does even for a stream with a source."""

    def __init__(self, default_window: float) -> None:
        self.default_window = default_window
        self.streams: dict[str, StreamConfig] = {}

    def _kept(self, config: StreamConfig) -> StreamInfo:
        window = config.duplicate_window or self.default_window or 0.0
        kept = dataclasses.replace(config, duplicate_window=window)
        self.streams[config.name or ""] = kept
        state = StreamState(messages=0, bytes=0, first_seq=0, last_seq=0, consumer_count=0)
        return StreamInfo(config=kept, state=state)

    async def add_stream(self, config: StreamConfig) -> StreamInfo:
        return self._kept(config)

    async def update_stream(self, config: StreamConfig) -> StreamInfo:
        return self._kept(config)

    async def add_consumer(self, stream: str, config: ConsumerConfig) -> None:
        return None


def test_the_command_stream_sources_the_empty_stream_and_asks_for_no_window() -> None:
    configs = {c.name: c for c in stream_configs()}
    command = configs[COMMAND_STREAM]
    assert command.duplicate_window == 0
    assert [s.name for s in command.sources or []] == [COMMAND_NO_DEDUPE_STREAM]
    assert list(configs).index(COMMAND_NO_DEDUPE_STREAM) < list(configs).index(COMMAND_STREAM)


async def test_a_server_that_keeps_no_window_is_left_as_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    js = FakeJetStream(default_window=0.0)  # nats-server 2.14 on, for a sourced stream
    with caplog.at_level(logging.WARNING):
        await declare_streams(cast("JetStreamContext", js))
    assert not js.streams[COMMAND_STREAM].duplicate_window
    assert "duplicate window" not in caplog.text


async def test_a_server_that_keeps_its_default_window_gets_the_least_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    js = FakeJetStream(default_window=120.0)  # nats-server before 2.14
    with caplog.at_level(logging.WARNING):
        await declare_streams(cast("JetStreamContext", js))
    assert js.streams[COMMAND_STREAM].duplicate_window == COMMAND_FALLBACK_DUPLICATE_WINDOW_S
    assert "0.1 s duplicate window on SYNCYARD_CMD" in caplog.text
    assert "upgrade nats-server" in caplog.text

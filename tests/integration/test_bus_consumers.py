"""Readers of the event stream own their consumers (#14): an analytics login may create,
read and delete only the consumers the roles table names for it, on the real embedded NATS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext

from events.subjects import EVENT_STREAM
from infra.embedded import EmbeddedNats
from infra.nats_credentials import connect_options
from infra.nats_roles import ADMIN, ANALYTICS, ANALYTICS_CONSUMER, RELAY, WORKER, roles
from infra.streams import declare_streams

pytestmark = pytest.mark.integration

READERS: dict[str, tuple[str, ...]] = {"ledger": ()}
LEDGER = "analytics_ledger"
LEDGER_CONSUMER = "analytics-ledger"
# A refused JetStream call: the server drops the request, so no answer comes.
REFUSED = (nats.errors.TimeoutError, TimeoutError, nats.errors.NoRespondersError)


@contextlib.asynccontextmanager
async def logged_in(server: EmbeddedNats, role: str) -> AsyncIterator[JetStreamContext]:
    """JetStream as `role` (a reader too), answering a refused call within a second."""
    credential = server.credentials[role]
    assert credential.password_file is not None
    nc: NatsClient = await nats.connect(
        server.url,
        user=credential.user,
        password=credential.password_file.read_text().strip(),
        inbox_prefix=roles(READERS)[role].inbox_prefix,
        allow_reconnect=False,
    )
    try:
        yield nc.jetstream(timeout=1.0)
    finally:
        await nc.close()


async def read_all(js: JetStreamContext, consumer: str | None) -> list[bytes]:
    sub = await js.pull_subscribe("syncyard.evt.>", durable=consumer)
    messages = await sub.fetch(10, timeout=1.0)
    for msg in messages:
        await msg.ack()
    return [msg.data for msg in messages]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A NATS with syncyard's roles and one analytics reader, `ledger`, and one event."""
    async with EmbeddedNats(tmp_path, table=roles(READERS)) as running:
        nc = await nats.connect(running.url, **connect_options(WORKER, running.credentials[WORKER]))
        await declare_streams(nc.jetstream())
        await nc.close()
        async with logged_in(running, RELAY) as relay:
            await relay.publish("syncyard.evt.connection.ConnectionRegistered", b"event-1")
        yield running


async def test_a_reader_creates_reads_and_deletes_only_consumers_it_owns(
    server: EmbeddedNats,
) -> None:
    async with logged_in(server, LEDGER) as ledger:
        assert await read_all(ledger, LEDGER_CONSUMER) == [b"event-1"]
        # Not the shared analytics login's consumer, nor one without a name.
        with pytest.raises(REFUSED):
            await read_all(ledger, ANALYTICS_CONSUMER)
        with pytest.raises(REFUSED):
            await read_all(ledger, None)

    async with logged_in(server, ANALYTICS) as analytics:
        with pytest.raises(REFUSED):
            await analytics.delete_consumer(EVENT_STREAM, LEDGER_CONSUMER)
        with pytest.raises(REFUSED):
            await analytics.consumer_info(EVENT_STREAM, LEDGER_CONSUMER)
        with pytest.raises(REFUSED):
            await read_all(analytics, None)  # an ephemeral: the server would name it
        assert await read_all(analytics, ANALYTICS_CONSUMER) == [b"event-1"]
        assert await analytics.delete_consumer(EVENT_STREAM, ANALYTICS_CONSUMER)

    async with logged_in(server, ADMIN) as admin:
        # The reader's durable survived the other login's attempt, its position too.
        info = await admin.consumer_info(EVENT_STREAM, LEDGER_CONSUMER)
        assert info.num_ack_pending == 0 and info.delivered.stream_seq == 1
    async with logged_in(server, LEDGER) as ledger:
        assert await ledger.delete_consumer(EVENT_STREAM, LEDGER_CONSUMER)

"""A bus nobody can forge (#14): per-role permissions on the real embedded NATS, the
relay's unguessable message ids, command ids scoped per space, RPC replies to inboxes only."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from events.codec import encode
from events.commands import GetAccounts
from events.subjects import (
    DLQ_PREFIX,
    EVENT_STREAM,
    HEADER_MSG_ID,
    HEADER_NOTIFICATION_ID,
    command_subject,
    rpc_subject,
)
from infra.bootstrap import Runtime
from infra.embedded import EmbeddedNats
from infra.eventlog.relay import PRIVATE_TOPICS
from infra.streams import declare_streams
from services.connections.state import connection_id_for
from tests.support import bus
from tests.support.harness import (
    SPACE,
    Client,
    client,
    eventually,
    register,
    running_syncyard,
    settings_for,
    stream_messages,
)

pytestmark = pytest.mark.integration

FORGED = b'{"forged": true}'
FORGED_SUBJECT = "syncyard.evt.connection.ConnectionRegistered"


@contextlib.asynccontextmanager
async def connected(nats_url: str, role: str) -> AsyncIterator[tuple[NatsClient, list[str]]]:
    """A connection as `role`, and the errors the server sends it (permission violations)."""
    errors: list[str] = []

    async def collect(error: Exception) -> None:
        errors.append(str(error))

    nc = await bus.connect(nats_url, role, error_cb=collect)
    try:
        yield nc, errors
    finally:
        await nc.close()


async def forge_events(nc: NatsClient, msg_ids: list[str]) -> None:
    """Publish forged events first, with the ids a relay would use; no ack is awaited."""
    for msg_id in msg_ids:
        await nc.publish(FORGED_SUBJECT, FORGED, headers={HEADER_MSG_ID: msg_id})
    await nc.flush()


async def refused(errors: list[str], subject: str) -> bool:
    """Whether the server said it refused a publish to `subject` (it says so asynchronously)."""
    said = f'permissions violation for publish to "{subject.lower()}"'
    seen = await eventually(
        lambda: asyncio.sleep(0, list(errors)), lambda now: any(said in e.lower() for e in now)
    )
    return bool(seen)


async def public_notification_ids(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT notification_id, topic FROM syncyard_events")
    finally:
        await conn.close()
    return {str(r["notification_id"]) for r in rows if r["topic"] not in PRIVATE_TOPICS}


def forged_on(messages: list[Any]) -> list[Any]:
    return [m for m in messages if m.data == FORGED]


@pytest.mark.parametrize("role", [bus.UPSTREAM, bus.ANALYTICS, bus.ADMIN])
async def test_an_event_published_by_a_client_that_is_not_the_relay_is_refused_by_the_server(
    syncyard: Runtime, nats_url: str, role: str
) -> None:
    async with connected(nats_url, role) as (nc, errors):
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await nc.jetstream().publish(FORGED_SUBJECT, FORGED, timeout=1)
        assert await refused(errors, FORGED_SUBJECT)

    assert forged_on(await stream_messages(nats_url)) == []


async def test_the_worker_s_own_connection_cannot_publish_an_event(
    syncyard: Runtime, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The connection that answers RPCs and runs commands: only the relay's may publish events.
    said = f'permissions violation for publish to "{FORGED_SUBJECT.lower()}"'
    with caplog.at_level(logging.ERROR, logger="infra.nats_logging"):
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await syncyard.js.publish(FORGED_SUBJECT, FORGED, timeout=1)
        await eventually(lambda: asyncio.sleep(0, caplog.text.lower()), lambda t: said in t)
    assert forged_on(await stream_messages(nats_url)) == []


async def test_the_worker_s_login_cannot_change_the_event_stream(
    syncyard: Runtime, nats_url: str
) -> None:
    # An update could shrink the stream's limits (dropping events) or add subjects
    # that take other messages in: only an operator's admin login may.
    async with connected(nats_url, bus.WORKER) as (nc, errors):
        js = nc.jetstream(timeout=1)
        config = (await js.stream_info(EVENT_STREAM)).config
        shrunk = dataclasses.replace(config, max_msgs=1)
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.update_stream(shrunk)
        assert await refused(errors, f"$JS.API.STREAM.UPDATE.{EVENT_STREAM}")
    async with connected(nats_url, bus.ADMIN) as (admin, _):
        assert (await admin.jetstream().stream_info(EVENT_STREAM)).config.max_msgs != 1


async def test_an_upstream_login_does_not_see_the_replies_an_admin_gets(
    syncyard: Runtime, nats_url: str
) -> None:
    # Upstream logins read `_INBOX.>` (any client library's default inbox); an
    # admin's replies (a stream's messages, access tokens included) go elsewhere.
    async with connected(nats_url, bus.UPSTREAM) as (upstream, _):
        overheard = await upstream.subscribe("_INBOX.>")
        async with connected(nats_url, bus.ADMIN) as (admin, _):
            info = await admin.jetstream().stream_info(EVENT_STREAM)
            assert info.config.name == EVENT_STREAM
        await upstream.flush()
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await overheard.next_msg(timeout=0.5)


@pytest.fixture(params=["permissions", "no permissions"])
async def any_nats(
    request: pytest.FixtureRequest, nats_url: str, clean_jetstream: None, tmp_path: Path
) -> AsyncIterator[str]:
    """The suite's NATS with syncyard's permissions, or one with none at all."""
    if request.param == "permissions":
        yield nats_url
        return
    async with EmbeddedNats(tmp_path / "open", secured=False) as server:
        yield server.url


async def test_an_event_forged_first_with_the_relay_s_message_id_does_not_replace_the_real_one(
    any_nats: str, sandbox: str, database_url: str
) -> None:
    # The relay's ids were the notification ids (`evt:1`, `evt:2`, ...): a forger
    # publishing first with them made JetStream drop every real event as a duplicate.
    predicted = [f"evt:{n}" for n in range(1, 40)]
    async with connected(any_nats, bus.WORKER) as (worker, _):
        await declare_streams(worker.jetstream())  # the stream exists before syncyard runs
    async with connected(any_nats, bus.UPSTREAM) as (forger, _):
        await forge_events(forger, predicted)
    if not bus.credentials(any_nats):  # no permissions: the forgeries are on the stream
        await eventually(
            lambda: stream_messages(any_nats), lambda m: len(forged_on(m)) == len(predicted)
        )

    async with (
        running_syncyard(settings_for(sandbox), any_nats, database_url),
        client(any_nats) as upstream,
    ):
        assert (await upstream.send(register("acct-forged", "plaid"))).success
        public = await public_notification_ids(database_url)

        def real(messages: list[Any]) -> set[str]:
            return {
                m.headers[HEADER_NOTIFICATION_ID]
                for m in messages
                if m.data != FORGED and m.headers and HEADER_NOTIFICATION_ID in m.headers
            }

        on_stream = await eventually(
            lambda: stream_messages(any_nats), lambda msgs: public <= real(msgs)
        )
    assert public and public <= real(on_stream)
    if bus.credentials(any_nats):  # with permissions, the forger could not publish at all
        assert forged_on(on_stream) == []


async def test_upstream_sends_a_command_and_gets_its_result_and_analytics_only_reads_events(
    syncyard: Runtime, upstream: Client, nats_url: str
) -> None:
    result = await upstream.send(register("acct-roles", "plaid"))
    assert result.success and not result.duplicate

    events = await eventually(lambda: stream_messages(nats_url), bool)  # read as analytics
    assert any(m.subject == "syncyard.evt.connection.ConnectionRegistered" for m in events)

    command = register("acct-analytics", "plaid", "analytics-1")
    async with connected(nats_url, bus.ANALYTICS) as (analytics, errors):
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await analytics.jetstream().publish(
                command_subject(command.op), encode(command), timeout=1
            )
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await analytics.request(rpc_subject(command.op), encode(command), timeout=1)
        assert await refused(errors, command_subject(command.op))
        assert await refused(errors, rpc_subject(command.op))
    connection = await syncyard.store.get_connection(connection_id_for(SPACE, "acct-analytics"))
    assert connection is None


async def test_the_same_command_id_in_two_spaces_is_accepted_and_run_in_both(
    syncyard: Runtime, upstream: Client
) -> None:
    in_a = register("acct-twin", "plaid", "twin-1", space_id="space-a")
    in_b = register("acct-twin", "plaid", "twin-1", space_id="space-b")

    # JetStream keeps both: their message ids are scoped by space.
    assert await upstream.publish(in_a)
    assert await upstream.publish(in_b)

    for space in ("space-a", "space-b"):
        result = await upstream.result_in(space, "twin-1")
        assert result.success and not result.duplicate, result.error
    a = await syncyard.store.get_connection(connection_id_for("space-a", "acct-twin"))
    b = await syncyard.store.get_connection(connection_id_for("space-b", "acct-twin"))
    assert a is not None and b is not None
    # Each space's link has a credential of its own: one command id, two credentials.
    assert {link.credential_id for link in a.links.values()}.isdisjoint(
        {link.credential_id for link in b.links.values()}
    )


@pytest.mark.parametrize(
    "reply", ["syncyard.evt.connection.Forged", f"$JS.API.STREAM.PURGE.{EVENT_STREAM}"]
)
async def test_an_rpc_whose_reply_subject_is_not_an_inbox_is_answered_nowhere(
    syncyard: Runtime, upstream: Client, nats_url: str, database_url: str, reply: str
) -> None:
    assert (await upstream.send(register("acct-rpc-reply", "plaid"))).success
    public = await public_notification_ids(database_url)
    before = await eventually(
        lambda: stream_messages(nats_url),
        lambda msgs: len({m.headers[HEADER_NOTIFICATION_ID] for m in msgs}) == len(public),
    )
    request = GetAccounts(command_id="rpc-forged", space_id=SPACE, account_id="acct-rpc-reply")

    async with connected(nats_url, bus.ADMIN) as (admin, _):
        landed: list[bytes] = []

        async def watch(msg: Any) -> None:
            landed.append(msg.data)

        await admin.subscribe(reply, cb=watch)
        await admin.flush()
        await upstream.nc.publish(rpc_subject(request.op), encode(request), reply=reply)
        letters = await eventually(
            lambda: stream_messages(nats_url, f"{DLQ_PREFIX}.>"),
            lambda msgs: any(b"reply_not_inbox" in m.data for m in msgs),
        )
        await admin.flush()

    letter = next(msgspec.json.decode(m.data) for m in letters if b"reply_not_inbox" in m.data)
    assert letter["command_id"] == "rpc-forged" and letter["original_subject"] == rpc_subject(
        request.op
    )
    assert landed == []
    after = await stream_messages(nats_url)
    assert [m.data for m in after] == [m.data for m in before]

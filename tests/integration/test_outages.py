"""PostgreSQL or NATS goes away mid-flight: clear errors, then every command exactly once."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import aiohttp
import pytest

from infra.embedded import EmbeddedNats, EmbeddedPostgres
from tests.support import bus
from tests.support.harness import (
    Client,
    client,
    decode_json,
    eventually,
    register,
    running_syncyard,
    settings_for,
    stored_events,
    stream_messages,
    sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(240)]

ACCOUNTS = 5
PER_PHASE = 30


async def finished(database_url: str) -> int:
    return sum(
        t in ("SyncCompleted", "SyncFailed") for _, t, _ in await stored_events(database_url)
    )


async def publish_syncs(upstream: Client, phase: str) -> None:
    for n in range(PER_PHASE):
        await upstream.publish(sync(f"acct-{n % ACCOUNTS}", f"{phase}-{n}"))


def assert_one_end_per_command(published: list[object], phases: tuple[str, ...]) -> None:
    ends = collections.Counter(
        decode_json(m.data)["command_id"]  # type: ignore[attr-defined]
        for m in published
        if m.subject.rsplit(".", 1)[-1] in ("SyncCompleted", "SyncFailed")  # type: ignore[attr-defined]
    )
    expected = {f"{phase}-{n}" for phase in phases for n in range(PER_PHASE)}
    assert set(ends) == expected
    assert set(ends.values()) == {1}


async def test_postgres_going_away_mid_stream_delays_commands_but_loses_none(
    tmp_path: Path, sandbox: str, nats_url: str, clean_jetstream: None
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg-outage")
    await pg.__aenter__()
    port, database_url = pg.port, pg.url
    try:
        async with (
            running_syncyard(settings_for(sandbox), nats_url, database_url) as runtime,
            client(nats_url) as upstream,
        ):
            for a in range(ACCOUNTS):
                assert (await upstream.send(register(f"acct-{a}", "plaid"))).success
            await publish_syncs(upstream, "before")
            await eventually(lambda: finished(database_url), lambda n: n == PER_PHASE)

            await pg.__aexit__(None, None, None)  # the database goes away
            await publish_syncs(upstream, "during")  # accepted by JetStream all the same
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{runtime.http_url}/readyz") as resp,
            ):
                assert resp.status == 503
                assert (await resp.json())["checks"]["postgres"].startswith("unreachable")
            await asyncio.sleep(2)

            pg = EmbeddedPostgres(tmp_path / "pg-outage", port=port)
            await pg.__aenter__()  # ... and comes back with its data
            await publish_syncs(upstream, "after")
            await eventually(lambda: finished(database_url), lambda n: n >= 3 * PER_PHASE, 90)
            published = await eventually(
                lambda: stream_messages(nats_url),
                lambda msgs: sum("Sync" in m.subject for m in msgs) >= 3 * PER_PHASE,
                30,
            )
            assert_one_end_per_command(published, ("before", "during", "after"))
            assert not await stream_messages(nats_url, "syncyard.dlq.>")
    finally:
        await pg.__aexit__(None, None, None)


async def test_nats_going_away_mid_stream_loses_no_accepted_command(
    tmp_path: Path, sandbox: str, database_url: str
) -> None:
    nats_dir = tmp_path / "nats-outage"
    server = EmbeddedNats(nats_dir)
    await server.__aenter__()
    port, nats_url = server.port, server.url
    bus.register(nats_url, server.credentials)  # kept across its restart: same state dir
    try:
        async with running_syncyard(settings_for(sandbox), nats_url, database_url):
            async with client(nats_url) as upstream:
                for a in range(ACCOUNTS):
                    assert (await upstream.send(register(f"acct-{a}", "plaid"))).success
                await publish_syncs(upstream, "before")
            await server.__aexit__(None, None, None)  # NATS goes away with commands in flight
            await asyncio.sleep(1)
            server = EmbeddedNats(nats_dir, port=port)
            await server.__aenter__()  # ... and comes back with its JetStream store
            async with client(nats_url) as upstream:
                await publish_syncs(upstream, "after")
                await eventually(lambda: finished(database_url), lambda n: n >= 2 * PER_PHASE, 90)
            published = await eventually(
                lambda: stream_messages(nats_url),
                lambda msgs: sum("Sync" in m.subject for m in msgs) >= 2 * PER_PHASE,
                30,
            )
            assert_one_end_per_command(published, ("before", "after"))
    finally:
        await server.__aexit__(None, None, None)

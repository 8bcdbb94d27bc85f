"""Kill the worker, the relay and the projector mid-stream: nothing lost, nothing twice."""

from __future__ import annotations

import collections

import asyncpg
import pytest

from tests.support.harness import (
    Component,
    client,
    decode_json,
    eventually,
    register,
    stored_events,
    stream_messages,
    sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(300)]

ACCOUNTS = 20
COMMANDS = 300


async def test_killed_components_resume_with_every_command_applied_exactly_once(
    component_env: dict[str, str], nats_url: str, database_url: str
) -> None:
    worker = Component("worker", component_env)
    followers = Component("relay,projector", component_env)
    await worker.start()
    await followers.start()
    try:
        async with client(nats_url) as upstream:
            for i in range(ACCOUNTS):
                await upstream.publish(register(f"acct-{i}", "plaid"))
                await upstream.publish(register(f"acct-{i}", "mx"))
            for n in range(COMMANDS):
                await upstream.publish(sync(f"acct-{n % ACCOUNTS}", f"cmd-{n}"))

            async def finished() -> int:
                return sum(
                    t in ("SyncCompleted", "SyncFailed")
                    for _, t, _ in await stored_events(database_url)
                )

            # Kill everything part-way through the stream, then bring it back.
            await eventually(finished, lambda n: n >= COMMANDS // 3, timeout=60)
            await worker.kill()
            await followers.kill()
            done_at_crash = await finished()
            assert done_at_crash < COMMANDS, "the crash came too late to test anything"
            await worker.start()
            await followers.start()
            await eventually(finished, lambda n: n >= COMMANDS, timeout=120)
        await _assert_exactly_once(nats_url, database_url)
    finally:
        await worker.stop()
        await followers.stop()


async def _assert_exactly_once(nats_url: str, database_url: str) -> None:
    events = await stored_events(database_url)
    public = [nid for nid, topic, _ in events if topic != "CredentialStored"]

    async def relayed() -> list[int]:
        published = await stream_messages(nats_url)
        return [int(m.headers["Syncyard-Notification-Id"]) for m in published]

    # Every stored public event on the stream once: no gap, no duplicate.
    ids = await eventually(relayed, lambda got: len(got) >= len(public), timeout=30)
    assert sorted(ids) == public

    published = await stream_messages(nats_url)
    ends = collections.Counter(
        decode_json(m.data)["command_id"]
        for m in published
        if m.subject.rsplit(".", 1)[-1] in ("SyncCompleted", "SyncFailed")
    )
    assert set(ends) == {f"cmd-{n}" for n in range(COMMANDS)}
    assert set(ends.values()) == {1}

    attempts_in_store = sum(t == "ConnectionAttempted" for _, t, _ in events)
    conn = await asyncpg.connect(database_url)
    try:

        async def projected() -> tuple[int, int]:
            rows = await conn.fetchval("SELECT count(*) FROM connection_attempts")
            calls = await conn.fetchval(
                "SELECT COALESCE(sum(successes + failures), 0) FROM provider_health"
            )
            return int(rows), int(calls)

        expected = (attempts_in_store, attempts_in_store)
        assert await eventually(projected, lambda got: got == expected, timeout=30) == expected
    finally:
        await conn.close()

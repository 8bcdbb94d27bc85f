"""A command sent again reaches the worker: the command queue keeps no duplicate window
(infra/streams.py), so every op recognises a resend by its space and command id, however
late it comes, applies it once and answers it as a duplicate. The same command id in
another space is another command."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from events.commands import (
    Command,
    CreateLink,
    ForceBreaker,
    MapInstitution,
    ReleaseBreaker,
    StartLink,
)
from events.results import CommandResult
from events.subjects import space_header
from infra.bootstrap import Runtime
from services.connections.domain import connection_id_for
from tests.support.harness import (
    Client,
    client,
    eventually,
    register,
    running_syncyard,
    settings_for,
    stored_events,
    sync,
)

pytestmark = pytest.mark.integration


async def answers(upstream: Client, cmd: Command, count: int) -> list[CommandResult]:
    """Send `cmd` once more and wait for its `count`th answer."""
    assert await upstream.publish(cmd)  # NATS keeps it: no message id is dropped
    return await answered(upstream, cmd, count)


async def answered(upstream: Client, cmd: Command, count: int) -> list[CommandResult]:
    """`cmd`'s first `count` answers, once they came."""
    key = (space_header(cmd.space_id), cmd.command_id)
    results = await eventually(
        lambda: asyncio.sleep(0, upstream.in_space.get(key, [])), lambda r: len(r) >= count
    )
    return results[:count]


def hold(command_id: str, state: str = "open", *, space_id: str = "ops") -> ForceBreaker:
    return ForceBreaker(
        command_id=command_id,
        space_id=space_id,
        provider="plaid",
        state=state,  # type: ignore[arg-type]
        duration_s=600,
        actor="ana@ops",
        reason=f"drill {command_id}",
    )


def release(command_id: str) -> ReleaseBreaker:
    return ReleaseBreaker(
        command_id=command_id, space_id="ops", provider="plaid", actor="ana@ops", reason="over"
    )


async def topics(database_url: str) -> list[str]:
    return [topic for _, topic, _ in await stored_events(database_url)]


async def connection_topics(database_url: str, account_id: str) -> list[str]:
    """What the account's connection recorded, in order (acme.eu's space)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT topic FROM syncyard_events WHERE originator_id = $1 "
            "ORDER BY originator_version",
            connection_id_for("acme.eu", account_id),
        )
    finally:
        await conn.close()
    return [row["topic"].rsplit(":", 1)[-1] for row in rows]


async def test_a_resent_hold_after_another_is_a_duplicate_and_leaves_the_later_hold(
    syncyard: Runtime, upstream: Client, database_url: str
) -> None:
    [first] = await answers(upstream, hold("hold-1", "open"), 1)
    await answers(upstream, hold("hold-2", "closed"), 1)
    *_, again = await answers(upstream, hold("hold-1", "open"), 2)
    # The same command id in another space: another command, which holds it open.
    [elsewhere] = await answers(upstream, hold("hold-1", "open", space_id="ops-eu"), 1)

    assert first.success and not first.duplicate
    assert again.success and again.duplicate
    assert again.data is not None and again.data["forced"] == "closed"  # hold-2 stands
    assert elsewhere.success and not elsewhere.duplicate
    assert elsewhere.data is not None and elsewhere.data["forced"] == "open"
    assert (await topics(database_url)).count("BreakerForced") == 3


async def test_a_resent_release_is_a_duplicate_and_does_not_end_a_later_hold(
    syncyard: Runtime, upstream: Client, database_url: str
) -> None:
    await answers(upstream, hold("hold-1", "open"), 1)
    [first] = await answers(upstream, release("release-1"), 1)
    await answers(upstream, hold("hold-2", "open"), 1)
    *_, again = await answers(upstream, release("release-1"), 2)

    assert first.success and not first.duplicate
    assert again.success and again.duplicate
    assert again.data is not None and again.data["forced"] == "open"  # hold-2 stands
    assert syncyard.board.status("plaid", "US") == "open"
    assert (await topics(database_url)).count("BreakerReleased") == 1


def mapping(command_id: str, *providers: str, space_id: str = "ops") -> MapInstitution:
    return MapInstitution(
        command_id=command_id,
        space_id=space_id,
        institution_id="chase",
        region="US",
        providers=providers,
        actor="ana@ops",
        reason=f"drill {command_id}",
    )


async def test_a_mapping_is_told_apart_from_another_space_s_with_the_same_command_id(
    syncyard: Runtime, upstream: Client, database_url: str
) -> None:
    [first] = await answers(upstream, mapping("map-1", "mx", "plaid"), 1)
    [elsewhere] = await answers(upstream, mapping("map-1", "finicity", "mx", space_id="eu"), 1)
    *_, again = await answers(upstream, mapping("map-1", "mx", "plaid"), 2)

    assert first.success and not first.duplicate
    assert elsewhere.success and not elsewhere.duplicate
    assert elsewhere.data is not None and elsewhere.data["providers"] == ["finicity", "mx"]
    assert again.success and again.duplicate
    assert again.data is not None and again.data["providers"] == ["finicity", "mx"]
    assert (await topics(database_url)).count("InstitutionMappingChanged") == 2


async def test_a_space_s_commands_sent_twice_with_one_message_id_are_applied_once(
    syncyard: Runtime, upstream: Client, database_url: str
) -> None:
    # A publisher's retry: the same command, the same `Nats-Msg-Id`, on the queue twice.
    commands: list[Command] = [
        register("acct-twice", "plaid", "reg-1", space_id="acme.eu"),
        sync("acct-twice", "sync-1", space_id="acme.eu"),
        CreateLink(command_id="link-1", space_id="acme.eu", account_id="acct-new"),
        StartLink(command_id="start-1", space_id="acme.eu", account_id="acct-saga"),
    ]
    answered = []
    for cmd in commands:
        [first] = await answers(upstream, cmd, 1)
        *_, again = await answers(upstream, cmd, 2)
        answered.append((cmd.op, first, again))

    for op, first, again in answered:
        assert first.success and not first.duplicate, op
        assert again.success and again.duplicate, op
    assert (await connection_topics(database_url, "acct-twice")).count("ProviderLinked") == 1
    assert (await connection_topics(database_url, "acct-twice")).count("SyncCompleted") == 1
    assert (await connection_topics(database_url, "acct-new")).count("SyncCompleted") == 1
    assert (await topics(database_url)).count("SagaStarted") == 1


async def test_copies_of_a_command_taken_by_two_workers_at_once_are_applied_once(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    copies = 8
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(
                running_syncyard(settings_for(sandbox), nats_url, database_url)
            )
        upstream = await stack.enter_async_context(client(nats_url))
        await answers(upstream, register("acct-busy", "plaid", "reg-1", space_id="acme.eu"), 1)
        commands: list[Command] = [
            sync("acct-busy", "sync-1", space_id="acme.eu"),
            hold("hold-1", "open"),
        ]
        every = []
        for cmd in commands:  # the hold after the sync, whose provider it holds
            for _ in range(copies):  # every copy on the queue before a worker answers one
                assert await upstream.publish(cmd)
            every.append(await answered(upstream, cmd, copies))
        await asyncio.sleep(0.5)  # no more answers than copies sent
        keys = [(space_header(c.space_id), c.command_id) for c in commands]
        assert [len(upstream.in_space[key]) for key in keys] == [copies, copies]

    for results in every:
        assert all(r.success for r in results), results
        assert [r.duplicate for r in results].count(False) == 1
    assert (await connection_topics(database_url, "acct-busy")).count("SyncCompleted") == 1
    assert (await topics(database_url)).count("BreakerForced") == 1

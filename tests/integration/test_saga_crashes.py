"""A worker SIGKILLed at every step boundary of a link saga: another resumes it, nothing twice.

The crashing worker runs as its own process with the fault-injection hook
`SYNCYARD_SAGA_CRASH_AT=<step>:<after_effect|after_event>`; the sandbox's
idempotency report counts each provider side effect per key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from infra.bootstrap import open_runtime
from infra.saga_store import PostgresSagaStore
from sagas.state import SagaState
from tests.integration.saga_helpers import (
    complete_link,
    idempotency,
    keys_for,
    link_token_of,
    person_finishes,
    saga_ended,
    saga_id,
    saga_reaches,
    start_link,
)
from tests.support.harness import (
    CIPHER_KEY,
    Client,
    Component,
    client,
    inject_fault,
    settings_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(90)]

SIDE_EFFECTS = {
    "create_link": "/plaid/link/token/create",
    "exchange_token": "/plaid/item/public_token/exchange",
    "get_accounts": "/plaid/accounts/get",
    "sync_transactions": "/plaid/transactions/sync",
    "remove_item": "/plaid/item/remove",
}


@contextlib.asynccontextmanager
async def observed(
    sandbox: str, nats_url: str, database_url: str
) -> AsyncIterator[tuple[PostgresSagaStore, Client]]:
    """The test's own view of the saga streams (no components), and an upstream client."""
    settings = settings_for(sandbox, nats_url=nats_url)
    async with (
        open_runtime(settings, nats_url, database_url, cipher_key=CIPHER_KEY) as reader,
        client(nats_url) as upstream,
    ):
        assert reader.sagas is not None
        yield reader.sagas, upstream


async def _finish_link(
    store: PostgresSagaStore, upstream: Client, sandbox: str, command_id: str
) -> None:
    done = await person_finishes(sandbox, "plaid", await link_token_of(store, command_id))
    await upstream.publish(complete_link("acct-c", command_id, done["public_token"]))


async def _crash_then_resume(
    env: dict[str, str],
    crash_at: str,
    store: PostgresSagaStore,
    upstream: Client,
    *,
    sandbox: str,
    command_id: str,
) -> SagaState:
    crashing = Component("worker", {**env, "SYNCYARD_SAGA_CRASH_AT": crash_at})
    resumed = Component("worker", env)
    await crashing.start()
    try:
        await upstream.publish(start_link("acct-c", command_id))
        if not crash_at.startswith("create_link:"):
            await _finish_link(store, upstream, sandbox, command_id)
        assert crashing.proc is not None
        assert await asyncio.wait_for(crashing.proc.wait(), 20) == -9
        await resumed.start()
        if crash_at.startswith("create_link:"):
            await _finish_link(store, upstream, sandbox, command_id)
        return await saga_ended(store, command_id, timeout=30)
    finally:
        await crashing.stop()
        await resumed.stop()


BOUNDARIES = [
    f"{step}:{point}"
    for step in ("create_link", "exchange_token", "get_accounts", "sync_transactions")
    for point in ("after_effect", "after_event")
]


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_a_link_saga_killed_at_a_step_boundary_finishes_without_repeating_a_side_effect(
    component_env: dict[str, str], sandbox: str, nats_url: str, database_url: str, boundary: str
) -> None:
    step, _, point = boundary.partition(":")
    env = {**component_env, "SYNCYARD_SAGA_LEASE_S": "1"}
    async with observed(sandbox, nats_url, database_url) as (store, upstream):
        state = await _crash_then_resume(
            env, boundary, store, upstream, sandbox=sandbox, command_id="link-c"
        )

    assert state.status == "completed", state
    report = await idempotency(sandbox)
    for name, path in SIDE_EFFECTS.items():
        keys = keys_for(report, path, saga_id("link-c"))
        if name == "remove_item":
            assert keys == {}
            continue
        # One key per step (the crashed attempt's key was reused), one effect per key.
        assert [use["effects"] for use in keys.values()] == [1], (name, keys)
        replayed = sum(use["replays"] for use in keys.values())
        assert replayed == (1 if (name, point) == (step, "after_effect") else 0), (name, keys)
    assert all(n == 1 for n in state.attempts.values())


async def test_a_compensation_killed_after_its_side_effect_is_not_repeated(
    component_env: dict[str, str], sandbox: str, nats_url: str, database_url: str
) -> None:
    env = {**component_env, "SYNCYARD_SAGA_LEASE_S": "1"}
    await inject_fault(
        sandbox, provider="plaid", endpoint="/accounts/get", error_code="INVALID_REQUEST"
    )
    async with observed(sandbox, nats_url, database_url) as (store, upstream):
        state = await _crash_then_resume(
            env, "remove_item:after_effect", store, upstream, sandbox=sandbox, command_id="link-r"
        )

    assert state.status == "aborted"
    assert state.compensated == ("remove_item", "forget_token", "mark_connection_aborted")
    removed = keys_for(await idempotency(sandbox), SIDE_EFFECTS["remove_item"], saga_id("link-r"))
    assert [(u["effects"], u["replays"]) for u in removed.values()] == [(1, 1)]


async def test_the_link_deadline_fires_after_a_restart(
    component_env: dict[str, str], sandbox: str, nats_url: str, database_url: str
) -> None:
    env = {**component_env, "SYNCYARD_SAGA_LEASE_S": "1"}
    first, second = Component("worker", env), Component("worker", env)
    async with observed(sandbox, nats_url, database_url) as (store, upstream):
        await first.start()
        try:
            await upstream.publish(start_link("acct-d", "link-d", link_deadline_s=2.0))
            waiting = await saga_reaches(store, "link-d", lambda s: "link_deadline" in s.timers)
            await first.kill()
            # Nobody is running while the person's time runs out.
            await asyncio.sleep(2.5)
            assert (await store.load(saga_id("link-d"))) == waiting
            await second.start()
            state = await saga_ended(store, "link-d")
        finally:
            await first.stop()
            await second.stop()

    assert state.status == "aborted"
    assert state.fired == frozenset({"link_deadline"})
    assert state.compensating is not None
    assert (state.compensating.reason, state.compensating.step) == (
        "deadline_passed",
        "await_public_token",
    )
    assert state.compensated == ("mark_connection_aborted",)

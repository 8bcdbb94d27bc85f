"""A link made while the providers' breakers refuse calls waits for them, as a sync does.

syncyard, NATS and PostgreSQL for real, the sandbox over HTTP. The breakers
are held open by an operator's hold of a few seconds: refused without a call,
the command or saga step must wait for the hold to lift, keep its tries,
and then go through, instead of failing (or, after the token exchange,
undoing a link the person has just made). The ramp a release starts is turned
off here: what comes back after it is tests/integration/test_waiting.py's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from events.commands import CreateLink
from infra.bootstrap import Runtime
from infra.saga_store import PostgresSagaStore
from tests.integration.saga_helpers import (
    link_token_of,
    person_finishes,
    saga_ended,
    saga_id,
    saga_reaches,
    start_link,
)
from tests.support.harness import AUTH, Client, running_syncyard, settings_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HOLD_S = 3.0  # longer than a saga step's three quick tries (0.5 s, then 1 s apart)


@pytest.fixture
async def syncyard(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> AsyncIterator[Runtime]:
    """Every component of syncyard, with the default breakers: their ramp after a hold
    ends spreads background syncs, and lets a person's link through at once."""
    async with running_syncyard(settings_for(sandbox), nats_url, database_url) as runtime:
        yield runtime


async def hold_open(runtime: Runtime, providers: list[str], seconds: float = HOLD_S) -> None:
    """An operator holds each provider's US breaker open: every call to it is refused."""
    for provider in providers:
        await runtime.board.force(
            provider, "US", None, state="open", duration_s=seconds, actor="test",
            reason="outage drill", command_id=f"hold-{provider}",
        )  # fmt: skip


def us_providers(runtime: Runtime) -> list[str]:
    return [p for p in runtime.settings.hierarchy["US"] if p in runtime.settings.providers]


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def _store(runtime: Runtime) -> PostgresSagaStore:
    assert runtime.sagas is not None
    return runtime.sagas


async def test_a_link_create_every_provider_refuses_waits_and_then_gets_its_token(
    syncyard: Runtime, upstream: Client
) -> None:
    await hold_open(syncyard, us_providers(syncyard))
    cmd = CreateLink(command_id="link-wait-1", space_id="space-1", account_id="acct-lw1")
    first = await upstream.send(cmd)
    assert not first.success and first.attempts == 0 and first.deferred_until is not None
    assert first.error is not None and first.error.code == "all_providers_unavailable"
    assert await upstream.wait_final(["link-wait-1"], 20)
    final = upstream.finals["link-wait-1"]
    assert final.success and final.provider == "plaid" and final.data is not None
    assert final.data["token"].startswith("link-sandbox-")


async def test_a_link_saga_started_while_every_provider_refuses_waits_for_them(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await hold_open(syncyard, us_providers(syncyard))
    assert (await upstream.send(start_link("acct-lw2", "link-wait-2"))).success
    token = await link_token_of(_store(syncyard), "link-wait-2")
    assert (await person_finishes(sandbox, "plaid", token))["webhook_status"] == 200
    state = await saga_ended(_store(syncyard), "link-wait-2")
    assert state.status == "completed", state
    assert state.refusals["create_link"] >= 1
    assert state.outputs["create_link"]["provider"] == "plaid"
    # The saga's own view says the refused attempts waited, not that they failed.
    view = await get_json(f"{syncyard.http_url}/v1/sagas/{saga_id('link-wait-2')}")
    (create,) = [step for step in view["steps"] if step["name"] == "create_link"]
    outcomes = [row["outcome"] for row in create["attempts"]]
    assert outcomes[-1] == "succeeded" and set(outcomes[:-1]) == {"waited"}


async def test_the_link_s_first_read_waits_for_plaid_s_breaker_instead_of_undoing_the_link(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    assert (await upstream.send(start_link("acct-lw3", "link-wait-3"))).success
    token = await link_token_of(store, "link-wait-3")
    # The person finishes the link while Plaid's breaker is held open: the token
    # exchange is the link's own call, the reads after it are refused.
    await hold_open(syncyard, ["plaid"])
    assert (await person_finishes(sandbox, "plaid", token))["webhook_status"] == 200
    waited = await saga_reaches(store, "link-wait-3", lambda s: s.refusals or s.finished)
    assert waited.compensating is None
    state = await saga_ended(store, "link-wait-3")
    assert state.status == "completed", state
    assert state.compensated == () and sum(state.refusals.values()) >= 1
    assert list(state.outputs)[-2:] == ["get_accounts", "sync_transactions"]

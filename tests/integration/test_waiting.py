"""A refusal is not a failure: refused syncs wait and keep their tries; age or a person ends them.

syncyard, NATS and PostgreSQL for real, the sandbox over HTTP. Breaker and
retry timings are shortened so the waits take seconds.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import aiohttp
import msgspec
import pytest

from events.commands import ForceBreaker, ReleaseBreaker
from infra.config import Settings
from services.resilience.board import call_key
from services.resilience.policy import BreakerPolicy, PolicyBook
from services.resilience.ramp import ramp_place, ramp_share
from services.resilience.retry import DEFAULT_RETRY, RetryPolicy
from tests.support.harness import (
    AUTH,
    SPACE,
    Client,
    client,
    decode_json,
    eventually,
    inject_fault,
    register,
    running_syncyard,
    settings_for,
    stored_events,
    stream_messages,
    sync,
)

pytestmark = pytest.mark.integration

# One try at provider_down: a refusal that spent it would end the sync at once.
ONE_TRY = {**DEFAULT_RETRY, "provider_down": RetryPolicy(tries=1)}


def waiting_settings(sandbox: str) -> Settings:
    policy = BreakerPolicy(
        failure_threshold=2, open_timeout_s=1.5, successes_to_close=1, ramp_interval_s=1.0
    )
    return msgspec.structs.replace(
        settings_for(sandbox), breakers=PolicyBook(default=policy), retry=ONE_TRY
    )


async def open_plaid(upstream: Client, sandbox: str) -> None:
    """Two failed syncs of another account open Plaid's breaker."""
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=500,
        error_code="INTERNAL_SERVER_ERROR",  # Plaid's own: its provider-wide breaker
        count=2,
    )
    assert (await upstream.send(register("tripper", "plaid"))).success
    for n in range(2):
        assert not (await upstream.send(sync("tripper", f"trip-{n}"))).success


async def deferrals(nats_url: str, command_ids: list[str]) -> list[dict[str, Any]]:
    """The SyncDeferred events of `command_ids`, as the relay published them."""
    messages = await stream_messages(nats_url, "syncyard.evt.connection.SyncDeferred")
    events = [decode_json(m.data) for m in messages]
    return [e for e in events if e["command_id"] in command_ids]


async def relayed_deferrals(nats_url: str, command_ids: list[str], n: int) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]]:
        return await deferrals(nats_url, command_ids)

    return await eventually(probe, lambda got: len(got) >= n, timeout=10)


async def test_a_sync_refused_by_an_open_breaker_keeps_its_tries_and_runs_once_it_half_opens(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = waiting_settings(sandbox)
    async with (
        running_syncyard(settings, nats_url, database_url) as runtime,
        client(nats_url) as upstream,
    ):
        assert (await upstream.send(register("acct-w", "plaid"))).success
        await open_plaid(upstream, sandbox)

        async def status() -> str:
            return runtime.board.status("plaid", "US")

        await eventually(status, lambda s: s == "open", timeout=5)
        first = await upstream.send(sync("acct-w", "waits-1"))
        assert not first.success and first.attempts == 0 and first.deferred_until is not None
        assert first.error is not None and first.error.code == "all_providers_unavailable"
        assert await upstream.wait_final(["waits-1"], 20)
        (refusal,) = await relayed_deferrals(nats_url, ["waits-1"], 1)
    final = upstream.finals["waits-1"]
    assert final.success and final.provider == "plaid"
    assert refusal["refused"] is True and refusal["tries"] == 0 and refusal["waits"] == 1


async def test_the_read_models_show_a_refused_sync_as_a_wait_and_not_as_a_failure(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = waiting_settings(sandbox)
    async with (
        running_syncyard(settings, nats_url, database_url) as runtime,
        client(nats_url) as upstream,
        aiohttp.ClientSession(headers=AUTH) as http,
    ):
        assert (await upstream.send(register("acct-r", "plaid"))).success
        await open_plaid(upstream, sandbox)

        async def status() -> str:
            return runtime.board.status("plaid", "US")

        await eventually(status, lambda s: s == "open", timeout=5)
        assert (await upstream.send(sync("acct-r", "waits-r"))).attempts == 0
        assert await upstream.wait_final(["waits-r"], 20)
        assert upstream.finals["waits-r"].success

        async def fetch(path: str) -> Any:
            async with http.get(f"{runtime.http_url}/v1{path}?space_id={SPACE}") as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        syncs = await eventually(
            lambda: fetch("/connections/acct-r/syncs"),
            lambda body: any(s["outcome"] == "success" for s in body["syncs"]),
        )
        connection = (await fetch("/connections/acct-r/status"))["connections"][0]
        (reliability,) = (await fetch("/connections/acct-r/reliability"))["connections"]
    outcomes = {s["outcome"] for s in syncs["syncs"] if s["command_id"] == "waits-r"}
    assert "waited" in outcomes and "deferred" not in outcomes and "failure" not in outcomes
    # The wait was no failure: the connection is active, its one sync a success.
    assert connection["status"] == "active" and connection["consecutive_failures"] == 0
    assert connection["waits"] >= 1 and connection["waiting_until"] is None
    assert reliability["waited"] >= 1 and reliability["failed"] == 0
    assert reliability["total"] == reliability["successful"] == 1


async def test_syncs_waiting_behind_a_breaker_reach_plaid_on_a_ramp_once_it_closes(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = waiting_settings(sandbox)
    waiting = [f"queue-{i}" for i in range(16)]
    async with (
        running_syncyard(settings, nats_url, database_url) as runtime,
        client(nats_url) as upstream,
    ):
        for i in range(len(waiting)):
            assert (await upstream.send(register(f"q{i}", "plaid"))).success
        await open_plaid(upstream, sandbox)

        async def status() -> str:
            return runtime.board.status("plaid", "US")

        await eventually(status, lambda s: s == "open", timeout=5)
        for i, command_id in enumerate(waiting):
            await upstream.publish(sync(f"q{i}", command_id))
        assert await upstream.wait_final(waiting, 30)

        async def relayed_so_far() -> list[dict[str, Any]]:
            return await deferrals(nats_url, waiting)

        def ramp_seen(got: list[dict[str, Any]]) -> bool:
            waited = {d["command_id"] for d in got}
            ramped = any("ramping up" in str(d["error"]["message"]) for d in got)
            return ramped and len(waited) >= len(waiting) - 1

        # The relay may still be publishing: wait for every waiter's deferral and
        # a ramp's (none on a breaker without a ramp: this fails with what it saw).
        relayed = await eventually(relayed_so_far, ramp_seen, timeout=10)
    # Every one but the probe waited behind the breaker; once it closed, some
    # waited again for their place in the ramp (above) instead of arriving all
    # at once (how many depends on when each came back: tests/unit/test_ramp.py
    # counts the shape per interval). Waiting spent none of their tries.
    assert all(upstream.finals[c].success for c in waiting)
    assert all(d["refused"] and d["tries"] == 0 for d in relayed)


async def test_syncs_held_by_an_operator_come_back_on_a_ramp_once_the_hold_is_released(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = waiting_settings(sandbox)
    held = [f"held-{i}" for i in range(16)]
    async with (
        running_syncyard(settings, nats_url, database_url),
        client(nats_url) as upstream,
    ):
        for i in range(len(held)):
            assert (await upstream.send(register(f"h{i}", "plaid"))).success
        hold = ForceBreaker(
            command_id="hold-plaid",
            space_id="operators",
            provider="plaid",
            state="open",
            duration_s=600,
            actor="ops@example",
            reason="Plaid incident",
        )
        assert (await upstream.send(hold)).success
        for i, command_id in enumerate(held):
            await upstream.publish(sync(f"h{i}", command_id))
        for command_id in held:
            first = await upstream.result(command_id)
            assert first.attempts == 0 and first.error is not None
            assert "held by an operator" in first.error.message
        release = ReleaseBreaker(
            command_id="release-plaid",
            space_id="operators",
            provider="plaid",
            actor="ops@example",
            reason="incident over",
        )
        assert (await upstream.send(release)).success
        # Ten minutes before the hold would have expired: the release reached them.
        assert await upstream.wait_final(held, 30)

        async def relayed(event: str) -> list[dict[str, Any]]:
            messages = await stream_messages(nats_url, f"syncyard.evt.*.{event}")
            return [decode_json(m.data) for m in messages]

        calls = await eventually(
            lambda: relayed("ConnectionAttempted"),
            lambda got: {c["command_id"] for c in got} >= set(held),
        )
        (released,) = await relayed("BreakerReleased")
        # Every one waited out the hold; some then waited for their place in the ramp.
        waited = await eventually(
            lambda: deferrals(nats_url, held),
            lambda got: any("ramping up" in d["error"]["message"] for d in got),
            timeout=10,
        )
    assert all(upstream.finals[c].success for c in held)
    # None lost, none run twice: one call to Plaid each, after the release.
    assert Counter(c["command_id"] for c in calls if c["command_id"] in held) == Counter(held)
    # Admitted on the ramp the release started: each one only once its place was open.
    policy = settings.breakers.default
    released_at = datetime.fromisoformat(released["timestamp"])
    for call in (c for c in calls if c["command_id"] in held):
        at = datetime.fromisoformat(call["timestamp"])
        place = ramp_place(call_key(call["space_id"], call["command_id"]), released_at)
        assert at >= released_at and place < ramp_share(released_at, at, policy), call
    assert {d["command_id"] for d in waited} == set(held)
    assert all(d["refused"] and d["tries"] == 0 for d in waited)


async def test_a_retryable_error_past_the_max_age_fails_and_suggests_a_relink(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    retry = {**DEFAULT_RETRY, "provider_down": RetryPolicy(base_s=0.3, factor=1.0)}
    never_opens = PolicyBook(default=BreakerPolicy(failure_threshold=None))
    settings = msgspec.structs.replace(
        settings_for(sandbox), retry=retry, breakers=never_opens, sync_max_age_s=1.5
    )
    async with running_syncyard(settings, nats_url, database_url), client(nats_url) as upstream:
        assert (await upstream.send(register("acct-old", "plaid"))).success
        await inject_fault(
            sandbox,
            provider="plaid",
            endpoint="/transactions/sync",
            status=500,
            error_code="INSTITUTION_DOWN",
        )
        await upstream.publish(sync("acct-old", "too-old-1"))
        assert await upstream.wait_final(["too-old-1"], 20)
    final = upstream.finals["too-old-1"]
    assert not final.success and final.error is not None
    assert final.error.code == "sync_max_age_exceeded" and "INSTITUTION_DOWN" in final.error.message
    # More tries than the old default of five would have allowed were not needed to
    # get here: the age ends it, and the person is told to link elsewhere.
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics.count("SyncDeferred") >= 2
    assert "RelinkSuggested" in topics and topics[-1] == "SyncFailed"


async def test_an_auth_error_fails_at_once_and_asks_for_the_person(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    async with (
        running_syncyard(settings_for(sandbox), nats_url, database_url),
        client(nats_url) as upstream,
    ):
        assert (await upstream.send(register("acct-login", "plaid"))).success
        await inject_fault(
            sandbox,
            provider="plaid",
            endpoint="/transactions/sync",
            status=400,
            error_code="ITEM_LOGIN_REQUIRED",
        )
        result = await upstream.send(sync("acct-login", "login-1"))
    assert not result.success and result.deferred_until is None
    assert result.error is not None and result.error.code == "ITEM_LOGIN_REQUIRED"
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert "ReauthRequired" in topics and "SyncDeferred" not in topics

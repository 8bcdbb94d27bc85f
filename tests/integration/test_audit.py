"""Audits: what the live system showed at past moments is what `as of` answers later."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import pytest

from infra.audit import UnknownAggregateError, breaker_as_of, connection_as_of
from infra.bootstrap import Runtime
from services.connections.state import ConnectionState, connection_id_for
from services.resilience.policy import BreakerPolicy, PolicyBook
from tests.integration.test_cli import syncyard_cli
from tests.integration.test_replay import cli_env
from tests.support.harness import (
    client,
    eventually,
    inject_fault,
    register,
    running_syncyard,
    settings_for,
    sync,
)

pytestmark = pytest.mark.integration

QUICK_BREAKER = PolicyBook(default=BreakerPolicy(open_timeout_s=0.3, successes_to_close=1))


class Moment(msgspec.Struct, frozen=True):
    at: datetime
    breaker: str
    connection: ConnectionState


async def test_breaker_and_connection_as_of_past_moments_match_what_the_live_system_showed(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    settings = msgspec.structs.replace(settings_for(sandbox), breakers=QUICK_BREAKER)
    cid = connection_id_for("space-1", "aud-1")
    moments: list[Moment] = []
    async with (
        running_syncyard(settings, nats_url, database_url) as live,
        client(nats_url) as upstream,
    ):

        async def observe() -> None:
            state = await live.store.get_connection(cid)
            assert state is not None
            moments.append(Moment(datetime.now(UTC), live.board.status("plaid", "US"), state))
            await asyncio.sleep(0.01)  # the next event is stamped strictly later

        assert (await upstream.send(register("aud-1", "plaid"))).success
        assert (await upstream.send(register("aud-1", "mx"))).success
        await observe()  # closed, two links
        await inject_fault(
            sandbox,
            provider="plaid",
            endpoint="/transactions/sync",
            status=500,
            error_code="INTERNAL_SERVER_ERROR",
            count=5,
        )
        for n in range(5):
            assert (await upstream.send(sync("aud-1", f"down-{n}"))).provider == "mx"
        await eventually(lambda: _status(live), lambda s: s == "open", timeout=5)
        await observe()  # open, plaid down since the first failure
        await asyncio.sleep(0.4)  # past the open timeout: the next call is a probe
        assert (await upstream.send(sync("aud-1", "probe"))).provider == "plaid"
        await eventually(lambda: _status(live), lambda s: s == "closed", timeout=5)
        await observe()  # closed again, plaid healthy

        async with live.pool.acquire() as conn:
            for moment in moments:
                breaker = await breaker_as_of(conn, live.reader, "plaid", "US", moment.at)
                assert breaker.state.status == moment.breaker, moment.at
                connection = await connection_as_of(conn, live.reader, str(cid), moment.at)
                assert connection.state == moment.connection, moment.at
    assert [m.breaker for m in moments] == ["closed", "open", "closed"]
    assert "plaid" in moments[1].connection.down_since
    assert "plaid" not in moments[2].connection.down_since

    env = cli_env(database_url)
    code, out = await syncyard_cli(
        "audit", "breaker", "plaid", "US", "--as-of", moments[1].at.isoformat(), env=env
    )
    assert code == 0, out
    assert "BreakerOpened" in out and "BreakerClosed" not in out.split("state as of")[0]
    assert '"status": "open"' in out
    code, out = await syncyard_cli("audit", "connection", "space-1/aud-1", env=env)
    assert code == 0, out
    assert "ConnectionRegistered" in out and "SyncCompleted" in out and "command_id=probe" in out
    assert "access-sandbox" not in out


async def _status(live: Runtime) -> str:
    return live.board.status("plaid", "US")


async def test_audit_refuses_unknown_ids_and_unreadable_times_clearly(database_url: str) -> None:
    env = cli_env(database_url)
    from tests.support.eventgen import create_events_table  # noqa: PLC0415

    await asyncio.to_thread(create_events_table, database_url, env["SYNCYARD_CIPHER_KEY"])
    code, out = await syncyard_cli("audit", "connection", "space-1/nobody", env=env)
    assert code == 1 and "no connection" in out
    code, out = await syncyard_cli("audit", "connection", "not-an-id", env=env)
    assert code == 2 and "neither a connection UUID nor SPACE_ID/ACCOUNT_ID" in out
    code, out = await syncyard_cli("audit", "breaker", "mx", "EU", "--as-of", "yesterday", env=env)
    assert code == 2 and "cannot read 'yesterday' as a time" in out
    code, out = await syncyard_cli("audit", "breaker", "mx", "EU", env=env)
    assert code == 1 and "no breaker events for provider 'mx' in region 'EU'" in out


async def test_the_library_refuses_a_connection_that_never_had_an_event(syncyard: Runtime) -> None:
    async with syncyard.pool.acquire() as conn:
        with pytest.raises(UnknownAggregateError):
            await connection_as_of(conn, syncyard.reader, "space-1/none", datetime.now(UTC))

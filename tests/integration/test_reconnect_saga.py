"""The reconnect saga: a login the provider refused, repaired in update mode, syncs resume."""

from __future__ import annotations

import pytest

from events.commands import ReconnectConnection
from infra.bootstrap import Runtime
from services.connections.domain import connection_id_for
from tests.integration.saga_helpers import (
    SPACE,
    link_token_of,
    person_finishes,
    saga_ended,
    start_and_complete,
)
from tests.support.harness import (
    Client,
    eventually,
    inject_fault,
    sandbox_calls,
    stream_messages,
    sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _sync_calls(calls: dict[str, dict[str, dict[str, int]]]) -> int:
    return calls.get("plaid", {}).get("/transactions/sync", {}).get("calls", 0)


async def test_a_login_required_link_is_set_aside_then_reconnected_and_syncs_resume(
    syncyard: Runtime, upstream: Client, sandbox: str, nats_url: str
) -> None:
    assert syncyard.sagas is not None
    linked = await start_and_complete(upstream, syncyard.sagas, sandbox, "acct-r", "link-r")
    assert linked.status == "completed"
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        error_code="ITEM_LOGIN_REQUIRED",
        count=1,
    )
    refused = await upstream.send(sync("acct-r", "sync-1"))
    assert not refused.success
    connection_id = connection_id_for(SPACE, "acct-r")
    connection = await syncyard.store.get_connection(connection_id)
    assert connection is not None and connection.reauth == frozenset({"plaid"})

    # While the link awaits the person, syncs through it are not attempted.
    before = _sync_calls(await sandbox_calls(sandbox))
    held = await upstream.send(sync("acct-r", "sync-2"))
    assert not held.success and held.error is not None
    assert held.error.code == "reauth_required"
    assert _sync_calls(await sandbox_calls(sandbox)) == before

    started = await upstream.send(
        ReconnectConnection(command_id="reconnect-1", space_id=SPACE, account_id="acct-r")
    )
    assert started.success, started.error
    token = await link_token_of(syncyard.sagas, "reconnect-1", step="create_update_link")
    delivered = await person_finishes(sandbox, "plaid", token)
    assert delivered["webhook_status"] == 200, delivered
    state = await saga_ended(syncyard.sagas, "reconnect-1")

    assert state.status == "completed", state
    assert list(state.outputs) == [
        "create_update_link",
        "await_completion",
        "mark_usable",
        "sync_transactions",
    ]
    repaired = await syncyard.store.get_connection(connection_id)
    assert repaired is not None and repaired.reauth == frozenset()
    resumed = await upstream.send(sync("acct-r", "sync-3"))
    assert resumed.success, resumed.error

    async def subjects() -> list[str]:
        return [m.subject for m in await stream_messages(nats_url)]

    published = await eventually(
        subjects, lambda s: s.count("syncyard.evt.saga.LinkCompleted") == 2
    )
    assert "syncyard.evt.connection.ReauthRequired" in published
    # Neither flow put a token on the public stream.
    everything = b"\n".join(m.data for m in await stream_messages(nats_url))
    assert b"access-sandbox-" not in everything and b"public-sandbox-" not in everything


async def test_reconnect_is_refused_when_no_link_awaits_re_authentication(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    assert syncyard.sagas is not None
    await start_and_complete(upstream, syncyard.sagas, sandbox, "acct-s", "link-s")
    answer = await upstream.send(
        ReconnectConnection(command_id="reconnect-2", space_id=SPACE, account_id="acct-s")
    )
    assert not answer.success and answer.error is not None
    assert answer.error.code == "nothing_to_reconnect"

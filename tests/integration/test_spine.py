"""One command end to end: NATS in, provider over HTTP, events in PostgreSQL, out again."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest

from events.codec import decode_result, encode
from events.commands import GetAccounts
from events.results import CommandResult
from events.subjects import rpc_subject
from infra.bootstrap import Runtime
from tests.support import bus
from tests.support.harness import (
    AUTH,
    SPACE,
    Client,
    decode_json,
    eventually,
    inject_fault,
    register,
    sandbox_calls,
    stored_events,
    stream_messages,
    sync,
)

pytestmark = pytest.mark.integration


async def test_a_command_comes_out_as_events_in_the_store_on_the_stream_and_in_read_models(
    syncyard: Runtime, upstream: Client, nats_url: str, database_url: str
) -> None:
    assert (await upstream.send(register("acct-1", "plaid"))).success
    result = await upstream.send(sync("acct-1", "sync-1", count=10))

    assert result.success and result.provider == "plaid" and not result.failover_used
    assert result.data is not None and len(result.data["entries"]) > 0
    entries = result.data["entries"]
    assert [e["position"] for e in entries] == list(range(1, len(entries) + 1))
    assert result.data["position"] == len(entries)
    # A change to a transaction names the syncyard id its addition gave, even within one walk.
    added = {e["syncyard_transaction_id"] for e in entries if e["change"] == "added"}
    assert all(e["syncyard_transaction_id"] in added for e in entries if e["change"] != "added")
    # syncyard keeps the cursor: syncing again brings nothing already delivered.
    again = await upstream.send(sync("acct-1", "sync-2", count=10))
    assert again.success and again.data is not None and again.data["entries"] == []
    assert again.data["position"] == len(entries)
    topics = [
        topic
        for _, topic, _ in await stored_events(database_url)
        if not topic.startswith("InstitutionMapping")  # seeded at start-up
    ]
    assert topics == [
        "ConnectionRegistered",
        "ProviderLinked",
        "CredentialStored",
        "ConnectionAttempted",
        "FeedAppended",
        "SyncCompleted",
        # The second walk found nothing new: no FeedAppended, which would change nothing.
        "ConnectionAttempted",
        "SyncCompleted",
    ]

    async def connection_events() -> list[Any]:
        return [m for m in await stream_messages(nats_url) if ".evt.connection." in m.subject]

    published = await eventually(connection_events, lambda msgs: len(msgs) == 6)
    assert [m.subject for m in published] == [
        "syncyard.evt.connection.ConnectionRegistered",
        "syncyard.evt.connection.ProviderLinked",
        "syncyard.evt.connection.ConnectionAttempted",
        "syncyard.evt.connection.SyncCompleted",
        "syncyard.evt.connection.ConnectionAttempted",
        "syncyard.evt.connection.SyncCompleted",
    ]
    assert all(b"access-sandbox" not in m.data for m in published)

    assert syncyard.http_url is not None
    async with aiohttp.ClientSession(headers=AUTH) as http:

        async def history() -> list[dict[str, object]]:
            url = f"{syncyard.http_url}/v1/connections/acct-1/history?limit=10&space_id={SPACE}"
            async with http.get(url) as resp:
                return list((await resp.json())["attempts"])

        attempts = await eventually(history, lambda rows: len(rows) == 2)
        assert all(a["provider"] == "plaid" and a["outcome"] == "success" for a in attempts)

        async def health() -> list[dict[str, object]]:
            async with http.get(f"{syncyard.http_url}/v1/providers/health?region=US") as resp:
                return list((await resp.json())["providers"])

        rows = await eventually(health, lambda rows: len(rows) == 1)
        assert rows[0]["provider"] == "plaid" and rows[0]["successes"] == 2


async def test_the_rpc_path_returns_the_result_envelope(
    syncyard: Runtime, upstream: Client, nats_url: str
) -> None:
    assert (await upstream.send(register("acct-rpc", "plaid"))).success
    nc = await bus.connect(nats_url)
    try:
        reply = await nc.request(
            rpc_subject("accounts.get"),
            encode(GetAccounts(command_id="rpc-1", space_id="space-1", account_id="acct-rpc")),
            timeout=10,
        )
    finally:
        await nc.drain()
    result = decode_result(reply.data)
    assert result.success and result.command_id == "rpc-1" and result.provider == "plaid"
    assert result.data is not None and len(result.data["accounts"]) >= 1


async def test_a_retryable_primary_error_fails_over_to_the_backup_link_and_records_both(
    syncyard: Runtime, upstream: Client, sandbox: str, database_url: str
) -> None:
    await upstream.send(register("acct-2", "plaid"))
    await upstream.send(register("acct-2", "mx"))
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=500,
        error_code="INTERNAL_SERVER_ERROR",
    )
    result = await upstream.send(sync("acct-2", "sync-fo"))

    assert result.success and result.provider == "mx" and result.failover_used
    assert result.attempts == 2
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert topics[-5:] == [
        "ConnectionAttempted",
        "ProviderFailed",
        "ConnectionAttempted",
        "FeedAppended",
        "SyncCompleted",
    ]


async def test_a_non_retryable_error_does_not_fail_over(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await upstream.send(register("acct-3", "plaid"))
    await upstream.send(register("acct-3", "mx"))
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=400,
        error_code="INVALID_REQUEST",
    )
    result = await upstream.send(sync("acct-3", "sync-nr"))

    assert not result.success and not result.failover_used and result.provider == "plaid"
    assert result.error is not None and result.error.code == "INVALID_REQUEST"
    assert result.error.type == "validation" and "no failover" in result.error.message
    calls = await sandbox_calls(sandbox)
    assert not any("transactions" in endpoint for endpoint in calls.get("mx", {}))


async def test_a_broken_login_at_one_provider_fails_over_to_the_other_link(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await upstream.send(register("acct-3b", "plaid"))
    await upstream.send(register("acct-3b", "mx"))
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=400,
        error_code="ITEM_LOGIN_REQUIRED",
    )
    result = await upstream.send(sync("acct-3b", "sync-login"))
    assert result.success and result.provider == "mx" and result.failover_used


async def test_without_a_backup_link_a_failing_sync_says_why_it_did_not_fail_over(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await upstream.send(register("acct-4", "plaid"))
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=500,
        error_code="INTERNAL_SERVER_ERROR",
    )
    result = await upstream.send(sync("acct-4", "sync-nb"))

    assert not result.success and not result.failover_used
    assert result.error is not None and result.error.retryable
    assert "no link at another provider" in result.error.message


async def test_the_same_command_id_sent_twice_has_one_effect(
    syncyard: Runtime, upstream: Client, database_url: str
) -> None:
    await upstream.send(register("acct-5", "plaid"))
    first = await upstream.send(sync("acct-5", "sync-dup"))
    # NATS drops no resend (the command stream keeps no duplicate window: SECURITY.md),
    # with the same message id or another: the aggregate recognises the command id.
    assert await upstream.publish(sync("acct-5", "sync-dup"))
    assert await upstream.publish(sync("acct-5", "sync-dup"), msg_id="sync-dup-late-resend")

    async def answers() -> list[CommandResult]:
        return list(upstream.results.get("sync-dup", []))

    answered = await eventually(answers, lambda r: len(r) == 3)
    assert first.success and not first.duplicate
    for again in answered[1:]:
        assert again.duplicate and again.success and again.provider == first.provider
        # The original answer, entries and all: read back from the feed, no provider called.
        assert again.data == first.data
    completed = [t for _, t, _ in await stored_events(database_url) if t == "SyncCompleted"]
    assert len(completed) == 1


async def test_a_malformed_command_gets_an_error_result_and_a_dead_letter_and_the_next_succeeds(
    syncyard: Runtime, upstream: Client, nats_url: str
) -> None:
    await upstream.send(register("acct-6", "plaid"))
    await upstream.publish_raw("sync.transactions", b'{"command_id":"bad-1","space_id":', "bad-1")
    await upstream.publish_raw("no.such.op", b'{"command_id":"bad-2"}', "bad-2")
    await upstream.publish_raw(
        "sync.transactions",
        b'{"command_id":"bad-3","space_id":"s","account_id":"' + b"x" * 70_000 + b'"}',
        "bad-3",
    )
    refused = [await upstream.result(cid) for cid in ("bad-1", "bad-2", "bad-3")]
    assert [r.error.code for r in refused if r.error] == [
        "malformed_json",
        "unknown_operation",
        "payload_too_large",
    ]
    assert not any(r.success for r in refused)

    letters = await eventually(
        lambda: stream_messages(nats_url, "syncyard.dlq.>"), lambda msgs: len(msgs) == 3
    )
    reasons = {decode_json(m.data)["command_id"]: decode_json(m.data) for m in letters}
    assert reasons["bad-1"]["reason_code"] == "malformed_json"
    assert reasons["bad-2"]["original_subject"] == "syncyard.cmd.no.such.op"
    assert reasons["bad-3"]["reason_code"] == "payload_too_large"

    assert (await upstream.send(sync("acct-6", "good-after-bad"))).success


async def test_a_command_for_an_unknown_provider_or_connection_is_refused_clearly(
    syncyard: Runtime, upstream: Client
) -> None:
    unknown_provider = await upstream.send(register("acct-7", "nosuchbank"))
    assert unknown_provider.error is not None
    assert unknown_provider.error.code == "unknown_provider"
    assert "nosuchbank" in unknown_provider.error.message
    unknown_connection = await upstream.send(sync("never-registered", "sync-unknown"))
    assert unknown_connection.error is not None
    assert unknown_connection.error.code == "connection_not_found"


async def test_a_dead_lettered_registration_keeps_no_access_token(
    syncyard: Runtime, upstream: Client, nats_url: str
) -> None:
    # No item_id: it cannot be decoded, so it is dead-lettered with its known,
    # non-secret fields only: the token, spelt any way, anywhere, is not kept.
    await upstream.publish_raw(
        "connection.register",
        b'{"command_id":"bad-reg","space_id":"s","account_id":"a","provider":"plaid",'
        b'"access_token":"access-sandbox-secret-1",'
        b'"links":[{"accessToken":"access-sandbox-secret-2"}]}',
        "bad-reg",
    )
    refused = await upstream.result("bad-reg")
    assert refused.error is not None and not refused.success
    letters = await eventually(
        lambda: stream_messages(nats_url, "syncyard.dlq.>"), lambda msgs: len(msgs) == 1
    )
    letter = decode_json(letters[0].data)
    assert letter["command_id"] == "bad-reg"
    assert "access-sandbox-secret" not in letter["payload"]
    assert decode_json(letter["payload"].encode()) == {
        "command_id": "bad-reg",
        "space_id": "s",
        "account_id": "a",
        "provider": "plaid",
        "dropped_fields": 2,
    }


async def test_readiness_reports_both_dependencies(syncyard: Runtime) -> None:
    async with aiohttp.ClientSession() as http:
        # Open: a load balancer's probe carries no token.
        async with http.get(f"{syncyard.http_url}/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["checks"] == {"postgres": "ok", "nats": "ok"}
        url = f"{syncyard.http_url}/v1/connections/x/history?limit=zero&space_id={SPACE}"
        async with http.get(url, headers=AUTH) as resp:
            assert resp.status == 400
            assert "limit" in (await resp.json())["error"]["message"]


async def test_access_tokens_are_encrypted_at_rest(
    syncyard: Runtime, upstream: Client, database_url: str
) -> None:
    await upstream.send(register("acct-8", "plaid"))
    conn = await asyncpg.connect(database_url)
    try:
        states = await conn.fetch("SELECT state FROM syncyard_events")
    finally:
        await conn.close()
    assert states and all(b"access-sandbox-acct-8" not in bytes(r["state"]) for r in states)


async def test_a_provider_answering_garbage_is_classified_and_failed_over(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await upstream.send(register("acct-9", "plaid"))
    await upstream.send(register("acct-9", "mx"))
    await inject_fault(sandbox, provider="plaid", endpoint="/transactions/sync", body="garbage")
    result = await upstream.send(sync("acct-9", "sync-garbage"))
    assert result.success and result.provider == "mx" and result.failover_used

    await inject_fault(sandbox, provider="mx", endpoint="/transactions", body="truncated")
    failed = await upstream.send(sync("acct-9", "sync-all-garbage"))
    assert not failed.success and failed.error is not None
    assert failed.error.code == "invalid_response"
    assert "every linked provider failed (plaid, mx)" in failed.error.message


async def test_an_auth_error_sets_the_link_aside_until_the_person_links_again(
    syncyard: Runtime, upstream: Client, sandbox: str, database_url: str
) -> None:
    await upstream.send(register("acct-10", "plaid"))
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=400,
        error_code="ITEM_LOGIN_REQUIRED",
        count=1,
    )
    first = await upstream.send(sync("acct-10", "auth-1"))
    assert first.error is not None and first.error.code == "ITEM_LOGIN_REQUIRED"
    assert "ReauthRequired" in [t for _, t, _ in await stored_events(database_url)]

    calls_before = await sandbox_calls(sandbox)
    second = await upstream.send(sync("acct-10", "auth-2"))
    assert second.error is not None and second.error.code == "reauth_required"
    assert "re-authenticate" in second.error.message
    assert await sandbox_calls(sandbox) == calls_before  # no call was made

    await upstream.send(register("acct-10", "plaid", command_id="relinked"))
    assert (await upstream.send(sync("acct-10", "auth-3"))).success

"""The link saga end to end: real NATS, PostgreSQL, and the provider sandbox over HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import msgspec
import pytest

from events.commands import ReadFeed, ResumeSaga
from events.credentials import CredentialStored
from events.saga import LinkAborted, LinkCompleted
from infra.bootstrap import Runtime
from infra.eventstore import EVENTS_TABLE
from infra.saga_store import PostgresSagaStore
from sandbox.webhooks import mx_headers, plaid_headers, plaid_signing_key
from services.connections.domain import connection_id_for, credential_id_for
from tests.integration.saga_helpers import (
    SPACE,
    complete_link,
    idempotency,
    keys_for,
    link_token_of,
    person_finishes,
    saga_ended,
    saga_id,
    saga_reaches,
    sandbox_post,
    start_and_complete,
    start_link,
)
from tests.integration.test_cli import syncyard_cli
from tests.support.harness import (
    AUTH,
    CIPHER_KEY,
    MX_WEBHOOK_CREDENTIALS,
    Client,
    eventually,
    inject_fault,
    stream_messages,
    sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SANDBOX_SEED = 7  # create_sandbox_app's default: the seed of the `sandbox` fixture's keys


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def credential_keys_of(runtime: Runtime, credential_id: uuid.UUID) -> int:
    """Data keys kept for the credential (a shredded one keeps a tombstone, no key)."""
    return int(
        await runtime.pool.fetchval(
            "SELECT count(*) FROM syncyard_credential_keys "
            "WHERE credential_id = $1 AND wrapped_key IS NOT NULL",
            credential_id,
        )
    )


def _store(runtime: Runtime) -> PostgresSagaStore:
    assert runtime.sagas is not None
    return runtime.sagas


async def test_a_link_completes_when_the_provider_s_webhook_brings_the_public_token(
    syncyard: Runtime, upstream: Client, sandbox: str, nats_url: str
) -> None:
    store = _store(syncyard)
    started = await upstream.send(start_link("acct-1", "link-1"))
    assert started.success
    assert started.data == {"saga_id": str(saga_id("link-1")), "status": "running"}

    token = await link_token_of(store, "link-1")
    delivered = await person_finishes(sandbox, "plaid", token)
    assert delivered["webhook_status"] == 200, delivered
    state = await saga_ended(store, "link-1")

    assert state.status == "completed", state
    assert state.params["link_deadline_s"] == 1800.0  # the configured default, recorded
    assert list(state.outputs) == [
        "create_link",
        "await_public_token",
        "exchange_token",
        "get_accounts",
        "sync_transactions",
    ]
    connection = await syncyard.store.get_connection(connection_id_for(SPACE, "acct-1"))
    assert connection is not None and list(connection.links) == ["plaid"]
    (link,) = await syncyard.store.credentials(connection)
    assert link.access_token.startswith("access-sandbox-")
    # Kept sealed with its own key; read back through it once the cache is gone.
    credential_id = connection.links["plaid"].credential_id
    assert await credential_keys_of(syncyard, credential_id) == 1
    syncyard.store._tokens.clear()  # as a fresh replica starts: no token cached
    assert await syncyard.store.credentials(connection) == [link]

    # The result event upstream waits for, and not one secret on the public stream.
    async def published() -> list[bytes]:
        return [m.data for m in await stream_messages(nats_url)]

    async def subjects() -> list[str]:
        return [m.subject for m in await stream_messages(nats_url)]

    await eventually(subjects, lambda s: "syncyard.evt.saga.LinkCompleted" in s)
    messages = await published()
    assert len(messages) > 10
    everything = b"\n".join(messages)
    assert link.access_token.encode() not in everything
    assert delivered["public_token"].encode() not in everything
    assert b"access-sandbox-" not in everything and b"public-sandbox-" not in everything


async def test_create_link_fails_over_to_the_backup_provider_inside_the_flow(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await inject_fault(
        sandbox, provider="plaid", endpoint="/link/token/create", error_code="INTERNAL_SERVER_ERROR"
    )
    state = await start_and_complete(upstream, _store(syncyard), sandbox, "acct-2", "link-2")

    assert state.status == "completed", state
    assert state.outputs["create_link"]["provider"] == "mx"
    assert state.outputs["create_link"]["failover_used"] is True
    assert state.outputs["exchange_token"]["provider"] == "mx"


async def test_a_refused_exchange_aborts_the_link_and_undoes_the_created_link_once(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/item/public_token/exchange",
        error_code="INVALID_PUBLIC_TOKEN",
    )
    state = await start_and_complete(upstream, _store(syncyard), sandbox, "acct-3", "link-3")

    assert state.status == "aborted"
    assert state.compensating is not None
    assert (state.compensating.reason, state.compensating.step) == (
        "INVALID_PUBLIC_TOKEN",
        "exchange_token",
    )
    assert state.compensated == ("mark_connection_aborted",)
    assert state.compensation_attempts == {"mark_connection_aborted": 1}
    report = await idempotency(sandbox)
    assert keys_for(report, "/plaid/item/remove", saga_id("link-3")) == {}


async def test_a_refused_account_read_removes_the_item_and_forgets_the_token_once_each(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await inject_fault(
        sandbox, provider="plaid", endpoint="/accounts/get", error_code="INVALID_REQUEST"
    )
    state = await start_and_complete(upstream, _store(syncyard), sandbox, "acct-4", "link-4")

    assert state.status == "aborted"
    assert state.compensating is not None
    assert state.compensating.reason == "INVALID_REQUEST"
    assert state.compensating.step == "get_accounts"
    assert state.compensated == ("remove_item", "forget_token", "mark_connection_aborted")
    assert set(state.compensation_attempts.values()) == {1}
    removed = keys_for(await idempotency(sandbox), "/plaid/item/remove", saga_id("link-4"))
    assert [use["effects"] for use in removed.values()] == [1]
    connection = await syncyard.store.get_connection(connection_id_for(SPACE, "acct-4"))
    assert connection is not None and connection.links == {}
    assert await syncyard.store.credentials(connection) == []
    # Forgotten for good: the token in the log is sealed, and its key is destroyed.
    credential_id = uuid.UUID(state.outputs["exchange_token"]["credential_id"])
    (stored,) = [
        e for e in await _store(syncyard).events(credential_id) if isinstance(e, CredentialStored)
    ]
    assert stored.access_token.startswith("sealed:v1:")
    assert "access-sandbox" not in stored.access_token
    assert not await credential_keys_of(syncyard, credential_id)
    # The LinkAborted event carries the reason and the step.
    events = await _store(syncyard).events(saga_id("link-4"))
    aborted = events[-1]
    assert isinstance(aborted, LinkAborted)
    assert (aborted.reason, aborted.step) == ("INVALID_REQUEST", "get_accounts")


async def test_the_saga_api_shows_steps_attempts_timers_and_404_for_unknown_ids(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await start_and_complete(upstream, _store(syncyard), sandbox, "acct-5", "link-5")
    shown = f"{syncyard.http_url}/v1/sagas/{saga_id('link-5')}"
    async with aiohttp.ClientSession() as anonymous, anonymous.get(shown) as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(shown) as resp:
            assert resp.status == 200
            view = await resp.json()
        async with http.get(f"{syncyard.http_url}/v1/sagas/{saga_id('nope')}") as missing:
            assert missing.status == 404
        async with http.get(f"{syncyard.http_url}/v1/sagas/not-a-uuid") as bad:
            assert bad.status == 404
        async with http.get(f"{syncyard.http_url}/v1/openapi.json") as described:
            paths = (await described.json())["paths"]
    for path in ("/v1/sagas/{saga_id}", "/v1/sagas/{saga_id}/link", "/v1/sagas/{saga_id}/webhook"):
        assert not any("x-undocumented" in op for op in paths[path].values()), path
    # The view is for auditors too: no token that would open or finish the link.
    # (The step `await_public_token` and `with_public_token` name no token, only wait for one.)
    assert '"link_token"' not in json.dumps(view) and '"public_token"' not in json.dumps(view)
    stored = await _store(syncyard).load(saga_id("link-5"))
    assert stored is not None
    assert str(stored.outputs["create_link"]["link_token"]) not in json.dumps(view)

    assert view["status"] == "completed"
    assert [s["name"] for s in view["steps"]] == [
        "create_link",
        "await_public_token",
        "exchange_token",
        "get_accounts",
        "sync_transactions",
    ]
    first = view["steps"][0]["attempts"][0]
    assert first["outcome"] == "succeeded" and first["idempotency_key"].endswith(":do:create_link")
    assert view["timers"]["link_deadline"]["due_at"]
    assert view["result"]["event"] == "LinkCompleted"


async def test_audit_saga_prints_the_steps_and_refuses_unknown_ids_clearly(
    syncyard: Runtime, upstream: Client, sandbox: str, database_url: str
) -> None:
    await inject_fault(
        sandbox, provider="plaid", endpoint="/accounts/get", error_code="INVALID_REQUEST"
    )
    await start_and_complete(upstream, _store(syncyard), sandbox, "acct-6", "link-6")
    env = {"DATABASE_URL": database_url, "SYNCYARD_CIPHER_KEY": CIPHER_KEY}

    code, out = await syncyard_cli("audit", "saga", f"{SPACE}/link-6", env=env)
    assert code == 0, out
    assert f"saga {saga_id('link-6')} (link) — aborted" in out
    assert "step get_accounts attempt 1: failed (INVALID_REQUEST)" in out
    assert "compensation remove_item attempt 1: succeeded" in out
    assert "result: LinkAborted (INVALID_REQUEST)" in out
    assert "access-sandbox" not in out
    code, out = await syncyard_cli("audit", "saga", f"{SPACE}/nobody", env=env)
    assert code == 1 and "no saga" in out
    code, out = await syncyard_cli("audit", "saga", "not-an-id", env=env)
    assert code == 2 and "neither a saga UUID nor SPACE_ID/COMMAND_ID" in out


async def test_a_slow_step_in_one_saga_does_not_hold_back_another_connection_s_saga(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    await inject_fault(
        sandbox, provider="plaid", endpoint="/accounts/get", latency_ms=1500, count=1
    )
    await upstream.send(start_link("acct-slow", "link-slow"))
    done = await person_finishes(sandbox, "plaid", await link_token_of(store, "link-slow"))
    await upstream.send(complete_link("acct-slow", "link-slow", done["public_token"]))
    await saga_reaches(
        store,
        "link-slow",
        lambda s: s.in_flight is not None and s.in_flight.name == "get_accounts",
    )

    other = await start_and_complete(upstream, store, sandbox, "acct-fast", "link-fast")
    slow = await store.load(saga_id("link-slow"))

    assert other.status == "completed"
    assert slow is not None and "get_accounts" not in slow.outputs
    assert (await saga_ended(store, "link-slow")).status == "completed"


async def test_a_failing_compensation_is_retried_on_its_own_policy_until_it_succeeds(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    await inject_fault(
        sandbox, provider="plaid", endpoint="/accounts/get", error_code="INVALID_REQUEST"
    )
    await inject_fault(
        sandbox, provider="plaid", endpoint="/item/remove", error_code="INTERNAL_SERVER_ERROR"
    )
    await upstream.send(start_link("acct-7", "link-7"))
    done = await person_finishes(sandbox, "plaid", await link_token_of(store, "link-7"))
    await upstream.send(complete_link("acct-7", "link-7", done["public_token"]))

    failed = await saga_reaches(store, "link-7", lambda s: "remove_item" in s.compensation_failures)
    assert failed.status == "compensating" and failed.compensated == ()
    assert failed.compensation_failures["remove_item"].retry_at is not None
    async with aiohttp.ClientSession() as http, http.delete(f"{sandbox}/_admin/faults") as resp:
        assert resp.status == 200
    state = await saga_ended(store, "link-7")

    assert state.status == "aborted"
    assert state.compensated == ("remove_item", "forget_token", "mark_connection_aborted")
    assert state.compensation_attempts["remove_item"] >= 2
    removed = keys_for(await idempotency(sandbox), "/plaid/item/remove", saga_id("link-7"))
    assert sum(use["effects"] for use in removed.values()) == 1


@pytest.mark.integration
@pytest.mark.timeout(120)  # two rounds of the compensation's backoff
async def test_a_compensation_that_keeps_failing_needs_attention_until_an_operator_resumes_it(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    await inject_fault(
        sandbox, provider="plaid", endpoint="/accounts/get", error_code="INVALID_REQUEST"
    )
    await inject_fault(
        sandbox, provider="plaid", endpoint="/item/remove", error_code="INTERNAL_SERVER_ERROR"
    )
    await upstream.send(start_link("acct-8", "link-8"))
    done = await person_finishes(sandbox, "plaid", await link_token_of(store, "link-8"))
    await upstream.send(complete_link("acct-8", "link-8", done["public_token"]))

    # Every try of remove_item fails; its backoff (1+2+4+8 s) runs out in ~15 s.
    state = await saga_ended(store, "link-8", timeout=40.0)

    assert state.status == "needs_attention"
    assert state.attention is not None and "remove_item" in state.attention
    # The compensations after it wait too: forget_token would throw away the
    # token an operator needs to remove the item by hand.
    assert state.compensated == ()
    url = f"{syncyard.http_url}/v1/sagas/{saga_id('link-8')}"
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(url) as resp:
        view = await resp.json()
    assert view["status"] == "needs_attention"
    assert "remove_item" in view["attention"]
    removed = keys_for(await idempotency(sandbox), "/plaid/item/remove", saga_id("link-8"))
    assert sum(use["effects"] for use in removed.values()) == 0
    # ... and it is on the operator's list.
    listed = await eventually(
        lambda: get_json(f"{syncyard.http_url}/v1/sagas?status=needs_attention"),
        lambda body: body["counts"]["needs_attention"] == 1,
    )
    assert [s["saga_id"] for s in listed["sagas"]] == [str(saga_id("link-8"))]
    assert "remove_item" in listed["sagas"][0]["reason"]

    # The operator fixes the cause and resumes: the clean-up finishes, each part once.
    async with aiohttp.ClientSession() as http, http.delete(f"{sandbox}/_admin/faults") as r:
        assert r.status in (200, 204)
    resume = ResumeSaga(
        command_id="resume-8",
        space_id=SPACE,
        account_id="acct-8",
        saga_command_id="link-8",
        note="plaid's /item/remove is back",
    )
    reply = await upstream.send(resume)
    assert reply.success, reply.error
    assert reply.data == {"saga_id": str(saga_id("link-8")), "status": "compensating"}
    state = await saga_ended(store, "link-8")
    assert state.status == "aborted", state
    assert set(state.compensated) == {"remove_item", "forget_token", "mark_connection_aborted"}
    removed = keys_for(await idempotency(sandbox), "/plaid/item/remove", saga_id("link-8"))
    assert sum(use["effects"] for use in removed.values()) == 1
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(url) as resp:
        view = await resp.json()
    assert view["resumed"][0]["note"] == "plaid's /item/remove is back"
    assert view["result"]["event"] == "LinkAborted"
    listed = await eventually(
        lambda: get_json(f"{syncyard.http_url}/v1/sagas"),
        lambda body: body["counts"]["needs_attention"] == 0 and body["counts"]["aborted"] == 1,
    )
    assert listed["sagas"][0]["status"] == "aborted"

    # A resume of a saga that no longer needs attention is refused, saying why.
    late = await upstream.send(msgspec.structs.replace(resume, command_id="resume-8b"))
    assert not late.success and late.error is not None
    assert late.error.code == "saga_not_stuck"
    assert "aborted" in late.error.message


async def test_a_signed_webhook_about_another_link_session_gives_this_saga_nothing(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    for account, command_id in (("acct-own", "link-own"), ("acct-other", "link-other")):
        assert (await upstream.send(start_link(account, command_id))).success
    own = await link_token_of(store, "link-own")
    other = await link_token_of(store, "link-other")
    # Plaid's signature covers the body, not the URL: a body Plaid signed for the
    # other session, replayed to this saga's webhook URL, verifies all the same.
    body = json.dumps(
        {
            "webhook_type": "LINK",
            "webhook_code": "SESSION_FINISHED",
            "status": "SUCCESS",
            "link_token": other,
            "public_tokens": ["public-sandbox-someone-else"],
        }
    ).encode()
    url = f"{syncyard.http_url}/v1/sagas/{saga_id('link-own')}/webhook"
    headers = plaid_headers(plaid_signing_key(SANDBOX_SEED), body)
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        assert r.status == 200
        assert await r.json() == {"ignored": "link_token_mismatch"}
    waiting = await store.load(saga_id("link-own"))
    assert waiting is not None and not waiting.completion_received
    assert await store.public_token(saga_id("link-own")) is None

    # Its own session's webhook still completes it.
    assert (await person_finishes(sandbox, "plaid", own))["webhook_status"] == 200
    assert (await saga_ended(store, "link-own")).status == "completed"


async def test_after_failing_over_to_mx_the_link_completes_by_mx_s_own_webhook(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await inject_fault(
        sandbox, provider="plaid", endpoint="/link/token/create", error_code="INTERNAL_SERVER_ERROR"
    )
    assert (await upstream.send(start_link("acct-mx", "link-mx"))).success
    state = await saga_reaches(_store(syncyard), "link-mx", lambda s: "create_link" in s.outputs)
    assert state.outputs["create_link"]["provider"] == "mx"

    # The sandbox plays the person in MX's Connect widget; MX's webhook (Basic
    # credentials, no body signature) goes where MX was told, here the saga's URL.
    username, _, password = MX_WEBHOOK_CREDENTIALS.partition(":")
    delivered = await sandbox_post(
        sandbox,
        "/_admin/links/mx/complete",
        {
            "link_token": await link_token_of(_store(syncyard), "link-mx"),
            "webhook_url": f"{syncyard.http_url}/v1/sagas/{saga_id('link-mx')}/webhook",
            "webhook_username": username,
            "webhook_password": password,
        },
    )
    assert delivered["webhook_status"] == 200, delivered
    done = await saga_ended(_store(syncyard), "link-mx")

    assert done.status == "completed", done
    assert done.outputs["exchange_token"]["provider"] == "mx"
    assert isinstance((await _store(syncyard).events(saga_id("link-mx")))[-1], LinkCompleted)


async def test_the_link_s_first_sync_fills_the_account_s_feed_and_the_next_sync_adds_nothing(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    # At MX: a new Plaid item answers its first sync NOT_READY, with nothing to deliver.
    state = await start_and_complete(
        upstream, _store(syncyard), sandbox, "acct-feed", "link-feed", preferred_provider="mx"
    )
    assert state.status == "completed", state
    assert state.outputs["exchange_token"]["provider"] == "mx"
    delivered = state.outputs["sync_transactions"]["added"]
    assert delivered > 0

    read = await upstream.send(
        ReadFeed(command_id="read-feed-1", space_id=state.space_id, account_id="acct-feed")
    )
    assert read.success and read.data is not None
    assert len(read.data["entries"]) == delivered
    again = await upstream.send(sync("acct-feed", "sync-after-link", space_id=state.space_id))
    assert again.success and again.data is not None and again.data["entries"] == []


async def topics_of(runtime: Runtime, stream: uuid.UUID) -> list[str]:
    rows = await runtime.pool.fetch(
        f'SELECT topic FROM "{EVENTS_TABLE}" WHERE originator_id = $1',  # noqa: S608 - ours
        stream,
    )
    return [str(row["topic"]) for row in rows]


async def test_a_link_complete_carrying_another_person_s_mx_ids_is_refused_and_links_nothing(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    for account, command_id in (("acct-mine", "link-mine"), ("acct-theirs", "link-theirs")):
        assert (
            await upstream.send(start_link(account, command_id, preferred_provider="mx"))
        ).success
    # The other person finishes MX's widget: their USR:MBR ids exist and are valid at MX.
    theirs = await person_finishes(sandbox, "mx", await link_token_of(store, "link-theirs"))
    await link_token_of(store, "link-mine")

    sent = await upstream.send(complete_link("acct-mine", "link-mine", theirs["public_token"]))
    assert sent.success, sent.error  # accepted for the saga; the exchange says whose it is
    mine = await saga_ended(store, "link-mine")

    assert mine.status == "aborted", mine
    assert mine.compensating is not None
    assert (mine.compensating.step, mine.compensating.reason) == (
        "exchange_token",
        "completion_not_for_this_person",
    )
    assert "exchange_token" not in mine.outputs
    connection = await syncyard.store.get_connection(connection_id_for(SPACE, "acct-mine"))
    assert connection is not None and dict(connection.links) == {}
    topics = await topics_of(syncyard, connection_id_for(SPACE, "acct-mine"))
    assert not [t for t in topics if t.endswith("ProviderLinked")], topics
    credential = credential_id_for(SPACE, f"saga:{saga_id('link-mine')}:exchange_token")
    assert await topics_of(syncyard, credential) == []
    assert await credential_keys_of(syncyard, credential) == 0

    # The ids stay good for the person they were made for.
    reply = await upstream.send(complete_link("acct-theirs", "link-theirs", theirs["public_token"]))
    assert reply.success, reply.error
    assert (await saga_ended(store, "link-theirs")).status == "completed"


async def test_an_mx_webhook_naming_another_person_s_member_is_ignored_and_the_saga_waits(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    for account, command_id in (("acct-hook", "link-hook"), ("acct-else", "link-else")):
        assert (
            await upstream.send(start_link(account, command_id, preferred_provider="mx"))
        ).success
    theirs = await person_finishes(sandbox, "mx", await link_token_of(store, "link-else"))
    own_token = await link_token_of(store, "link-hook")
    user_guid, _, member_guid = str(theirs["public_token"]).partition(":")
    # MX's MEMBER webhook carries no link token: only its user and member say whose it is.
    body = json.dumps(
        {"type": "MEMBER", "action": "CREATED", "guid": member_guid, "user_guid": user_guid}
    ).encode()
    username, _, password = MX_WEBHOOK_CREDENTIALS.partition(":")
    url = f"{syncyard.http_url}/v1/sagas/{saga_id('link-hook')}/webhook"
    headers = mx_headers(username, password)
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        assert r.status == 200
        assert await r.json() == {"ignored": "not_this_link_session"}
    waiting = await store.load(saga_id("link-hook"))
    assert waiting is not None and waiting.status == "running"
    assert not waiting.completion_received
    assert await store.public_token(saga_id("link-hook")) is None

    # Its own person's webhook still completes it.
    delivered = await sandbox_post(
        sandbox,
        "/_admin/links/mx/complete",
        {
            "link_token": own_token,
            "webhook_url": url,
            "webhook_username": username,
            "webhook_password": password,
        },
    )
    assert delivered["webhook_status"] == 200, delivered
    done = await saga_ended(store, "link-hook")
    assert done.status == "completed", done
    assert done.outputs["exchange_token"]["provider"] == "mx"

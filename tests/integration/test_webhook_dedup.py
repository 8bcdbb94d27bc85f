"""A provider's webhook takes effect once: replays are acknowledged, not acted on (issue #14).

Over real HTTP to syncyard's webhook route, with the record of webhooks that
took effect in PostgreSQL (`infra/webhook_log.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from infra.bootstrap import Runtime
from infra.saga_store import PostgresSagaStore
from infra.webhook_log import Claim, WebhookLog
from sandbox.webhooks import mx_headers
from services.connections.state import connection_id_for
from services.providers.base import digest_event_id
from tests.integration.saga_helpers import (
    link_token_of,
    person_finishes,
    saga_ended,
    saga_id,
    saga_reaches,
    start_link,
)
from tests.support.harness import MX_WEBHOOK_CREDENTIALS, SPACE, Client, eventually, register

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _store(runtime: Runtime) -> PostgresSagaStore:
    assert runtime.sagas is not None
    return runtime.sagas


def _member_created(public_token: str, created_at: int) -> bytes:
    """MX's MEMBER CREATED webhook for the member the person just linked."""
    user_guid, _, member_guid = public_token.partition(":")
    return json.dumps(
        {
            "type": "MEMBER",
            "action": "CREATED",
            "guid": member_guid,
            "user_guid": user_guid,
            "created_at": created_at,
        }
    ).encode()


async def _deliver(runtime: Runtime, command_id: str, body: bytes) -> dict[str, Any]:
    username, _, password = MX_WEBHOOK_CREDENTIALS.partition(":")
    url = f"{runtime.http_url}/v1/sagas/{saga_id(command_id)}/webhook"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers=mx_headers(username, password)) as r,
    ):
        assert r.status == 200, await r.text()
        answer: dict[str, Any] = await r.json()
        return answer


async def test_the_same_webhook_delivered_twice_takes_effect_once_and_a_new_one_takes_effect(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    # One person, two link flows at MX (say, a second bank): both wait for a webhook.
    # One after the other: the first makes the person's MX user, the second finds it.
    widgets = {}
    for command_id in ("link-dup-a", "link-dup-b"):
        started = await upstream.send(start_link("acct-dup", command_id, preferred_provider="mx"))
        assert started.success, started.error
        widgets[command_id] = await link_token_of(store, command_id)
    first = await person_finishes(sandbox, "mx", widgets["link-dup-a"])
    webhook = _member_created(str(first["public_token"]), created_at=1_765_000_000)

    assert await _deliver(syncyard, "link-dup-a", webhook) == {
        "accepted": True,
        "duplicate": False,
    }
    # Replayed, to the same saga or to the person's other one (whose user it also
    # names): acknowledged, and the other flow is not handed the first bank's member.
    assert await _deliver(syncyard, "link-dup-a", webhook) == {"ignored": "duplicate_webhook"}
    assert await _deliver(syncyard, "link-dup-b", webhook) == {"ignored": "duplicate_webhook"}
    other = await store.load(saga_id("link-dup-b"))
    assert other is not None and not other.completion_received
    assert (await saga_ended(store, "link-dup-a")).status == "completed"

    # The second bank's own webhook is another event: it takes effect.
    second = await person_finishes(sandbox, "mx", widgets["link-dup-b"])
    own = _member_created(str(second["public_token"]), created_at=1_765_000_060)
    assert await _deliver(syncyard, "link-dup-b", own) == {"accepted": True, "duplicate": False}
    completed = await saga_reaches(store, "link-dup-b", lambda s: s.completion_received)
    assert completed.completion_received
    assert (await saga_ended(store, "link-dup-b")).status == "completed"

    seen = await syncyard.pool.fetch(
        "SELECT provider, handled FROM syncyard_webhooks_seen ORDER BY received_at"
    )
    assert [(r["provider"], r["handled"]) for r in seen] == [("mx", True), ("mx", True)]


async def test_an_ignored_webhook_is_not_kept_so_its_right_saga_still_acts_on_it(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    store = _store(syncyard)
    for account, command_id in (("acct-right", "link-right"), ("acct-wrong", "link-wrong")):
        started = await upstream.send(start_link(account, command_id, preferred_provider="mx"))
        assert started.success, started.error
    finished = await person_finishes(sandbox, "mx", await link_token_of(store, "link-right"))
    webhook = _member_created(str(finished["public_token"]), created_at=1_765_000_120)
    # The other saga too must have recorded its link (until then its receiver answers
    # 503, "link not recorded yet", for MX to retry): 1 run in 4-5 it had not.
    await link_token_of(store, "link-wrong")

    # Posted first to another person's saga (misrouted, or replayed there on purpose).
    assert await _deliver(syncyard, "link-wrong", webhook) == {"ignored": "not_this_link_session"}
    assert await _deliver(syncyard, "link-right", webhook) == {
        "accepted": True,
        "duplicate": False,
    }


async def test_a_claim_is_kept_when_handled_released_when_not_and_lapses_when_abandoned(
    database_url: str,
) -> None:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        log = WebhookLog(pool, claim_timeout=timedelta(seconds=0))
        await log.setup()
        await log.setup()  # a second replica starting

        finicity = await log.claim("finicity", "eventId:1")
        assert finicity.claim is Claim.OURS and finicity.token is not None
        assert await log.handled("finicity", "eventId:1", finicity.token)
        assert (await log.claim("finicity", "eventId:1")).claim is Claim.HANDLED
        plaid = await log.claim("plaid", "eventId:1")
        assert plaid.claim is Claim.OURS, "ids are per provider"

        belvo = await log.claim("belvo", "webhook_id:w")
        assert belvo.claim is Claim.OURS and belvo.token is not None
        assert await log.release("belvo", "webhook_id:w", belvo.token)
        assert (await log.claim("belvo", "webhook_id:w")).claim is Claim.OURS

        # A holder that crashed before handling: its claim lapses (at once, here).
        taken = await log.claim("belvo", "webhook_id:w")
        assert taken.claim is Claim.OURS and taken.token is not None
        assert await log.handled("belvo", "webhook_id:w", taken.token)
        await pool.execute(
            "UPDATE syncyard_webhooks_seen SET received_at = now() - interval '31 days'"
        )
        assert await log.purge() == 3
        assert (await log.claim("finicity", "eventId:1")).claim is Claim.OURS, (
            "past the retention it is new again"
        )


async def test_a_claim_in_flight_is_told_apart_from_one_handled_until_it_lapses(
    database_url: str,
) -> None:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        log = WebhookLog(pool)
        await log.setup()

        assert (await log.claim("mx", "sha256:a")).claim is Claim.OURS
        assert (await log.claim("mx", "sha256:a")).claim is Claim.IN_FLIGHT
        # Its holder crashed a while ago: the claim lapsed, and is taken over.
        await _lapse(pool)
        taken = await log.claim("mx", "sha256:a")
        assert taken.claim is Claim.OURS and taken.token is not None
        assert await log.handled("mx", "sha256:a", taken.token)
        assert (await log.claim("mx", "sha256:a")).claim is Claim.HANDLED


async def _lapse(pool: asyncpg.Pool) -> None:
    """Every claim held now was taken longer ago than the claims' timeout."""
    await pool.execute(
        "UPDATE syncyard_webhooks_seen SET received_at = now() - interval '61 seconds'"
    )


async def test_a_late_release_from_a_lapsed_holder_leaves_the_new_holder_s_claim(
    database_url: str,
) -> None:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        log = WebhookLog(pool)
        await log.setup()

        a = await log.claim("mx", "sha256:late")
        assert a.claim is Claim.OURS and a.token is not None
        # A is slow: its claim lapses, and the provider's resend (B) takes it over.
        await _lapse(pool)
        b = await log.claim("mx", "sha256:late")
        assert b.claim is Claim.OURS and b.token is not None and b.token != a.token

        # A finishes late, failed: its release must not drop B's claim.
        assert not await log.release("mx", "sha256:late", a.token)
        # A delivery arriving meanwhile is still told B is at it (the route's 409).
        assert (await log.claim("mx", "sha256:late")).claim is Claim.IN_FLIGHT
        # B fails too: the claim goes, and the provider's resend is acted on.
        assert await log.release("mx", "sha256:late", b.token)
        assert (await log.claim("mx", "sha256:late")).claim is Claim.OURS


async def test_a_lapsed_holder_that_took_effect_marks_the_webhook_handled_whatever_comes_after(
    database_url: str,
) -> None:
    """A's claim lapsed and B took it over; A then took effect. The webhook is handled:
    B failing (its release) must not let a resend act on it a third time."""
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        log = WebhookLog(pool)
        await log.setup()

        a = await log.claim("mx", "sha256:effect")
        assert a.token is not None
        await _lapse(pool)
        b = await log.claim("mx", "sha256:effect")
        assert b.token is not None and b.token != a.token

        # A took effect late: marked, though B holds the claim (False: not A's claim).
        assert not await log.handled("mx", "sha256:effect", a.token)
        assert not await log.release("mx", "sha256:effect", b.token)
        assert (await log.claim("mx", "sha256:effect")).claim is Claim.HANDLED

        # The other order: B fails and lets the claim go first, then A's effect lands.
        c = await log.claim("mx", "sha256:effect-2")
        assert c.token is not None
        await _lapse(pool)
        d = await log.claim("mx", "sha256:effect-2")
        assert d.token is not None
        assert await log.release("mx", "sha256:effect-2", d.token)
        assert not await log.handled("mx", "sha256:effect-2", c.token)
        assert (await log.claim("mx", "sha256:effect-2")).claim is Claim.HANDLED


async def _post_item_webhook(runtime: Runtime, body: bytes) -> tuple[int, Any, str | None]:
    username, _, password = MX_WEBHOOK_CREDENTIALS.partition(":")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{runtime.http_url}/v1/webhooks/mx",
            data=body,
            headers=mx_headers(username, password),
        ) as r,
    ):
        answer = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, answer, r.headers.get("Retry-After")


async def _challenged_and_linked(
    syncyard: Runtime, name: str
) -> tuple[bytes, Callable[[], Awaitable[Any]]]:
    """An MX "challenged" webhook for member `MBR-<name>`, once the item is in the
    read model (a delivery held up on the lookup would wait for it otherwise), and
    a probe of its claim's `handled` (None: no claim)."""
    challenged = json.dumps(
        {
            "type": "CONNECTION_STATUS",
            "action": "CHANGED",
            "member_guid": f"MBR-{name}",
            "user_guid": f"USR-{name}",
            "connection_status": "CHALLENGED",
        }
    ).encode()
    event_id = digest_event_id(challenged)

    async def holders() -> int:
        try:
            found = await syncyard.pool.fetchval(
                "SELECT count(*) FROM linked_items WHERE item_id = $1", f"MBR-{name}"
            )
        except asyncpg.UndefinedTableError:  # the projector is still starting
            return 0
        return int(found)

    await eventually(holders, lambda count: count == 1)

    async def claimed() -> Any:
        return await syncyard.pool.fetchval(
            "SELECT handled FROM syncyard_webhooks_seen WHERE provider = 'mx' AND event_id = $1",
            event_id,
        )

    return challenged, claimed


async def test_a_webhook_delivered_again_while_the_first_delivery_is_in_flight_is_not_acknowledged(
    syncyard: Runtime, upstream: Client
) -> None:
    """The second delivery must not be told "received": the first may yet fail, and
    then only the provider's resend brings the event back."""
    assert (await upstream.send(register("dup-flight", "mx"))).success
    challenged, claimed = await _challenged_and_linked(syncyard, "dup-flight")

    # The first delivery claims the webhook, then waits on the item lookup, which
    # this transaction holds up; then its database connection is cut: it fails.
    async with syncyard.pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE linked_items IN ACCESS EXCLUSIVE MODE")
        first = asyncio.create_task(_post_item_webhook(syncyard, challenged))
        assert await eventually(claimed, lambda handled: handled is False) is False

        status, answer, retry_after = await _post_item_webhook(syncyard, challenged)
        assert status == 409, answer
        assert answer == {"error": "being_handled", "retry": "send it again later"}
        assert retry_after is not None and int(retry_after) > 0

        await conn.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
            "WHERE l.relation = 'linked_items'::regclass AND NOT l.granted"
        )
        status, _, _ = await first
        assert status == 500
    assert await claimed() is None, "a failed delivery lets its claim go"

    # The provider sends it again, as it was told to: it takes effect, once.
    status, answer, _ = await _post_item_webhook(syncyard, challenged)
    assert (status, answer["recorded"]) == (200, ["ReauthRequired"])
    state = await syncyard.store.get_connection(connection_id_for(SPACE, "dup-flight"))
    assert state is not None and state.reauth == {"mx"}
    status, answer, _ = await _post_item_webhook(syncyard, challenged)
    assert (status, answer) == (200, {"ignored": "duplicate_webhook"})


async def test_a_delivery_whose_claim_lapsed_and_failed_late_leaves_the_new_holder_in_flight(
    syncyard: Runtime, upstream: Client
) -> None:
    """Over HTTP: delivery A's claim lapses while it waits, another delivery B takes
    it over; A then fails. A's release must leave B's claim, so a third delivery is
    told 409 rather than acting on the webhook beside B."""
    assert (await upstream.send(register("late-holder", "mx"))).success
    assert syncyard.webhooks is not None
    challenged, claimed = await _challenged_and_linked(syncyard, "late-holder")
    event_id = digest_event_id(challenged)

    async with syncyard.pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE linked_items IN ACCESS EXCLUSIVE MODE")
        a = asyncio.create_task(_post_item_webhook(syncyard, challenged))
        assert await eventually(claimed, lambda handled: handled is False) is False
        # A is held up past the claim's timeout; B (on another replica) takes it over.
        await _lapse(syncyard.pool)
        b = await syncyard.webhooks.claim("mx", event_id)
        assert b.claim is Claim.OURS
        await conn.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
            "WHERE l.relation = 'linked_items'::regclass AND NOT l.granted"
        )
        status, _, _ = await a
        assert status == 500
    assert await claimed() is False, "B's claim is still there"

    status, answer, retry_after = await _post_item_webhook(syncyard, challenged)
    assert status == 409, answer
    assert retry_after is not None
    state = await syncyard.store.get_connection(connection_id_for(SPACE, "late-holder"))
    assert state is not None and state.reauth == set()

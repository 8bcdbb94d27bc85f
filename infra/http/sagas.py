"""HTTP routes of the sagas: what a saga did, and the providers' webhooks for it.

`GET /v1/sagas/{id}`: the saga's steps, attempts, timers and compensations (no
link token: `sagas/view.py` leaves them out, so auditors may read it).
`GET /v1/sagas/{id}/link`: the link token the person's app opens the provider's
UI with, for an operator (or admin) of the saga's space, while the saga waits.
`POST /v1/sagas/{id}/webhook`: the webhook URL a saga gives the provider when
it creates the link (one URL per saga, so the receiver knows which flow and
which provider's signature to check); a verified "link finished" webhook
that names this saga's link session (`sagas.commands.webhook_completion`)
completes the saga as `link.complete` would. A webhook that already took
effect (its provider and `event_id` are in `infra/webhook_log.py`) is
answered 200 `{"ignored": "duplicate_webhook"}` and not acted on again; one
that another delivery is still acting on is answered 409 with `Retry-After`
(not acknowledged: that delivery may yet fail). The
item keeps the saga's URL after the saga ends, so the provider's later word
about the item (consent about to end, a login lost or repaired) comes here
too, and goes to the connections holding the item (`infra/http/webhooks.py`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from infra.http.auth import CALLER, space_refusal
from infra.http.openapi import Operation, OperationKey
from infra.http.webhooks import acted_once, apply_item_webhook
from infra.saga_store import PostgresSagaStore
from infra.webhook_log import WebhookLog
from sagas.commands import CompletionRefusedError, receive_completion, webhook_completion
from sagas.state import SagaState
from sagas.view import saga_view
from services.dependencies import Dependencies
from services.ports import LinkedItemsPort
from services.providers.base import (
    ProviderAdapter,
    ProviderCallError,
    WebhookEvent,
    WebhookRejectedError,
)

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
_LINK_STEPS = ("create_link", "create_update_link")


def _refuse(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


def _saga_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["saga_id"])
    except ValueError:
        raise _refuse(web.HTTPNotFound, "saga ids are UUIDs") from None


def saga_routes(
    deps: Dependencies,
    store: PostgresSagaStore,
    webhooks: WebhookLog,
    items: LinkedItemsPort | None = None,
) -> list[web.RouteDef]:
    async def show(request: web.Request) -> web.Response:
        saga_id = _saga_id(request)
        events = await store.events(saga_id)
        if not events:
            return web.json_response({"error": f"no saga {saga_id}"}, status=404)
        view = saga_view(events, await store.scheduled(saga_id))
        if (refused := space_refusal(request[CALLER], str(view["space_id"]))) is not None:
            return refused
        return web.json_response(view)

    async def link(request: web.Request) -> web.Response:
        saga_id = _saga_id(request)
        state = await store.load(saga_id)
        if state is None:
            raise _refuse(web.HTTPNotFound, f"no saga {saga_id}")
        caller = request[CALLER]
        if (refused := space_refusal(caller, state.space_id)) is not None:
            return refused
        # The token is handed out only while the person may still use it: once they
        # finished (or the saga stopped waiting), it opens nothing and need not leak.
        if state.status != "running" or state.completion_received:
            raise _refuse(
                web.HTTPConflict, f"the saga no longer waits for the person ({state.status})"
            )
        created = next((state.outputs[s] for s in _LINK_STEPS if s in state.outputs), None)
        if created is None:
            raise web.HTTPConflict(
                text=json.dumps({"error": "the link is not created yet: retry shortly"}),
                content_type="application/json",
                headers={"Retry-After": "1"},
            )
        # Who fetched a live link token, by the token's name (never the token itself).
        log.info("saga %s: link token handed to %s (%s)", saga_id, caller.name, caller.role)
        return web.json_response(
            {
                "saga_id": str(saga_id),
                "kind": state.kind,
                "provider": created.get("provider"),
                "link_token": created.get("link_token"),
                "expires_at": created.get("expires_at"),
            }
        )

    return [
        web.get("/v1/sagas/{saga_id}", show),
        web.get("/v1/sagas/{saga_id}/link", link),
        web.post("/v1/sagas/{saga_id}/webhook", _webhook_receiver(deps, store, webhooks, items)),
    ]


def _webhook_receiver(
    deps: Dependencies,
    store: PostgresSagaStore,
    webhooks: WebhookLog,
    items: LinkedItemsPort | None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def webhook(request: web.Request) -> web.Response:
        saga_id = _saga_id(request)
        state = await store.load(saga_id)
        if state is None:
            raise _refuse(web.HTTPNotFound, f"no saga {saga_id}")
        created = next((state.outputs[s] for s in _LINK_STEPS if s in state.outputs), None)
        if created is None:
            # The link was created but not yet recorded: the provider retries later.
            raise _refuse(web.HTTPServiceUnavailable, "link not recorded yet")
        adapter = deps.orchestrator.providers.get(str(created["provider"]))
        if adapter is None:
            raise _refuse(web.HTTPNotFound, "provider not configured")
        body = await request.read()
        try:
            event = await adapter.handle_webhook(
                request.headers, body, now=time.time(), timeout_s=WEBHOOK_TIMEOUT_S
            )
        except WebhookRejectedError as exc:
            raise _refuse(web.HTTPUnauthorized, str(exc)) from None
        except ProviderCallError as exc:
            raise _refuse(web.HTTPServiceUnavailable, str(exc)) from None

        async def act() -> tuple[web.Response, bool]:
            # The provider's word about the item the saga linked (consent, login) is the
            # connection's, whatever the saga does with it, and long after the saga ended.
            signalled = await apply_item_webhook(deps, items, event, body) if items else None
            response, took_effect = await _act(
                deps=deps, store=store, state=state, created=created, event=event, adapter=adapter
            )
            if signalled is None or took_effect:
                return response, took_effect
            return web.json_response(signalled), "accepted" in signalled

        return await acted_once(webhooks, event, act)

    return webhook


async def _act(
    *,
    deps: Dependencies,
    store: PostgresSagaStore,
    state: SagaState,
    created: dict[str, Any],
    event: WebhookEvent,
    adapter: ProviderAdapter,
) -> tuple[web.Response, bool]:
    """The answer to a verified webhook, and whether it took effect."""
    saga_id = state.id
    try:
        token, ignored = await webhook_completion(
            state, created, event, adapter, timeout_s=WEBHOOK_TIMEOUT_S
        )
    except ProviderCallError as exc:
        # Whose link the webhook names is unknown yet: the provider retries later.
        raise _refuse(web.HTTPServiceUnavailable, str(exc)) from None
    if ignored in ("link_token_mismatch", "not_this_link_session"):
        # Signed by the provider, but about another link session: a misrouted
        # or replayed webhook must not hand this saga someone else's item.
        log.warning("saga %s: %s webhook for another link session ignored", saga_id, event.provider)
    if ignored is not None:
        return web.json_response({"ignored": ignored}), False
    try:
        duplicate = await receive_completion(deps, store, saga_id, token, "webhook")
    except CompletionRefusedError as exc:
        # Answered 200: the provider must not keep retrying a flow that has ended.
        log.info("saga %s: webhook not applied: %s", saga_id, exc)
        return web.json_response({"ignored": exc.code}), False
    return web.json_response({"accepted": True, "duplicate": duplicate}), True


_SAGA_ID = {"name": "saga_id", "in": "path", "required": True,
            "schema": {"type": "string", "format": "uuid"}}  # fmt: skip
_NOT_FOUND = {"description": "No saga with that id (or not a UUID)"}

SAGA_OPERATIONS: dict[OperationKey, Operation] = {
    ("get", "/v1/sagas/{saga_id}"): {
        "summary": "A link or reconnect saga: steps, attempts, timers, compensations, result",
        "parameters": [_SAGA_ID],
        "responses": {
            "200": {
                "description": "The saga as its events tell it (plain JSON, no secrets)",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "404": _NOT_FOUND,
        },
    },
    ("get", "/v1/sagas/{saga_id}/link"): {
        "summary": "The link token (Plaid) or widget URL (MX) the person's app opens the "
        "provider's UI with, while the saga waits for the person: for an operator or admin "
        "of the saga's space (the app's backend fetches it and hands it to the app)",
        "parameters": [_SAGA_ID],
        "responses": {
            "200": {
                "description": "The provider and its link token, with when it expires",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["saga_id", "kind", "provider", "link_token"],
                            "properties": {
                                "saga_id": {"type": "string", "format": "uuid"},
                                "kind": {"type": "string", "enum": ["link", "reconnect"]},
                                "provider": {"type": "string"},
                                "link_token": {"type": "string"},
                                "expires_at": {"type": ["string", "null"]},
                            },
                        }
                    }
                },
            },
            "404": _NOT_FOUND,
            "409": {
                "description": "Not created yet (retry after Retry-After), or the saga no longer "
                "waits for the person (finished, compensating, or the person already came back)"
            },
        },
    },
    ("post", "/v1/sagas/{saga_id}/webhook"): {
        "summary": "A provider's webhook for one saga (signature checked)",
        "parameters": [_SAGA_ID],
        "responses": {
            "200": {
                "description": "Applied, or ignored (a kind the saga does not wait for, "
                "a webhook that names no link session of this saga's, or one that already "
                "took effect: `duplicate_webhook`)"
            },
            "401": {"description": "The signature is missing, forged or stale"},
            "404": _NOT_FOUND,
            "409": {
                "description": "Another delivery of the same webhook is being acted on: "
                "not acknowledged, send it again after `Retry-After` seconds"
            },
            "503": {"description": "Not ready or the provider's key unreachable: retry later"},
        },
    },
}

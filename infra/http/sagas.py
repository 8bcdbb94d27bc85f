"""HTTP routes of the sagas: what a saga did, and the providers' webhooks for it.

`GET /v1/sagas/{id}`: the saga's steps, attempts, timers and compensations.
`POST /v1/sagas/{id}/webhook`: the webhook URL a saga gives the provider when
it creates the link (one URL per saga, so the receiver knows which flow and
which provider's signature to check); a verified "link finished" webhook
completes the saga as `link.complete` would.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from aiohttp import web

from infra.http.openapi import Operation, OperationKey
from infra.saga_store import PostgresSagaStore
from sagas.commands import CompletionRefusedError, receive_completion
from sagas.view import saga_view
from services.dependencies import Dependencies
from services.providers.base import ProviderCallError, WebhookRejectedError

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


def saga_routes(deps: Dependencies, store: PostgresSagaStore) -> list[web.RouteDef]:
    async def show(request: web.Request) -> web.Response:
        saga_id = _saga_id(request)
        events = await store.events(saga_id)
        if not events:
            return web.json_response({"error": f"no saga {saga_id}"}, status=404)
        return web.json_response(saga_view(events, await store.scheduled(saga_id)))

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
        if event.link_token is not None and event.link_token != created.get("link_token"):
            # Signed by the provider, but about another link session: a misrouted
            # or replayed webhook must not hand this saga someone else's item.
            log.warning(
                "saga %s: %s webhook for another link session ignored", saga_id, event.provider
            )
            return web.json_response({"ignored": "link_token_mismatch"})
        repaired = event.raw.get("webhook_code") == "LOGIN_REPAIRED"
        if state.kind == "link" and event.kind == "public_token" and event.public_token:
            token: str | None = event.public_token
        elif state.kind == "reconnect" and (repaired or event.kind == "public_token"):
            token = None
        else:
            return web.json_response({"ignored": event.kind})
        try:
            duplicate = await receive_completion(deps, store, saga_id, token, "webhook")
        except CompletionRefusedError as exc:
            # Answered 200: the provider must not keep retrying a flow that has ended.
            log.info("saga %s: webhook not applied: %s", saga_id, exc)
            return web.json_response({"ignored": exc.code})
        return web.json_response({"accepted": True, "duplicate": duplicate})

    return [
        web.get("/v1/sagas/{saga_id}", show),
        web.post("/v1/sagas/{saga_id}/webhook", webhook),
    ]


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
    ("post", "/v1/sagas/{saga_id}/webhook"): {
        "summary": "A provider's webhook for one saga (signature checked)",
        "parameters": [_SAGA_ID],
        "responses": {
            "200": {
                "description": "Applied, or ignored (a kind the saga does not wait for, "
                "or a webhook about another link session)"
            },
            "401": {"description": "The signature is missing, forged or stale"},
            "404": _NOT_FOUND,
            "503": {"description": "Not ready or the provider's key unreachable: retry later"},
        },
    },
}

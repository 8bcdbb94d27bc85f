"""Providers' webhooks about linked items: `POST /v1/webhooks/{provider}`.

Where a provider sends what it has to say about an item some connection
already holds, not about a link flow: the URL configured in MX's, Belvo's or
Finicity's dashboard for every member or link, or given to Plaid for an item
(`/item/webhook/update`). Items linked through a saga keep the saga's URL
(`/v1/sagas/{id}/webhook`), which hands these webhooks here too.

Each webhook is verified with its provider's own scheme (the adapter's
`handle_webhook`) before anything is read from it, must name its item, and
is then decided on every connection holding that item
(`services/item_signals.py`): consent about to end (`ConsentExpiring`, once
per notice), a login lost (`ReauthRequired`) or repaired (`LoginRepaired`).
A webhook that already took effect (`infra/webhook_log.py`) is acknowledged
and not acted on again: a replayed "login lost" must not set aside a link the
person has since repaired.
Anything else signed by the provider is answered 200 and ignored, so the
provider does not retry it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from infra.http.openapi import Operation, OperationKey
from infra.webhook_log import Claim, WebhookLog
from services.dependencies import Dependencies
from services.item_signals import receive_signal, signal_of
from services.ports import LinkedItemsPort
from services.providers.base import (
    ProviderCallError,
    WebhookEvent,
    WebhookRejectedError,
)

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
# How soon a delivery that met another in flight should come again: long enough
# for that one to finish (its own calls are bounded by WEBHOOK_TIMEOUT_S).
IN_FLIGHT_RETRY_AFTER_S = 10


def _refuse(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


async def acted_once(
    webhooks: WebhookLog,
    event: WebhookEvent,
    act: Callable[[], Awaitable[tuple[web.Response, bool]]],
) -> web.Response:
    """`act` on a verified webhook unless it already took effect (a replay, or a provider's
    resend, to this URL or any other): then it is acknowledged and not acted on again.

    `act` answers the response and whether the webhook took effect; only then is
    its event id kept (`infra/webhook_log.py`), so an ignored or failed one is
    acted on when the provider sends it again.
    """
    if event.event_id is None:
        response, _ = await act()
        return response
    claimed = await webhooks.claim(event.provider, event.event_id)
    claim, token = claimed.claim, claimed.token
    if claim is Claim.HANDLED:
        log.info("%s webhook %s already acted on: acknowledged", event.provider, event.event_id)
        return web.json_response({"ignored": "duplicate_webhook"})
    if claim is Claim.IN_FLIGHT:
        # Not acknowledged: the delivery in flight may still fail, and then only
        # this one's resend can bring the event back.
        log.info("%s webhook %s being acted on: resend later", event.provider, event.event_id)
        return web.json_response(
            {"error": "being_handled", "retry": "send it again later"},
            status=409,
            headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
        )
    assert token is not None  # ours
    took_effect = False
    try:
        response, took_effect = await act()
    finally:
        # An effect is marked whoever holds the claim now (it happened); a release
        # acts only while the claim is still ours: had it lapsed and been taken
        # over, the delivery now holding it decides by its own outcome.
        settle = webhooks.handled if took_effect else webhooks.release
        if not await settle(event.provider, event.event_id, token):
            log.warning(
                "%s webhook %s: our claim lapsed and was taken over before we finished",
                event.provider,
                event.event_id,
            )
    return response


async def apply_item_webhook(
    deps: Dependencies, items: LinkedItemsPort, event: WebhookEvent, body: bytes
) -> dict[str, Any] | None:
    """The answer for a verified webhook that is an item signal; None when it is not one."""
    signal = signal_of(event, body)
    if signal is None:
        return None
    recorded = await receive_signal(deps, items, signal)
    if not recorded:
        log.info("%s webhook %s for an item no connection holds", event.provider, signal.code)
        return {"ignored": "unknown_item"}
    return {
        "accepted": True,
        "signal": signal.kind,
        "connections": len(recorded),
        "recorded": sorted({type(e).__name__ for events in recorded.values() for e in events}),
    }


def webhook_routes(
    deps: Dependencies, items: LinkedItemsPort, webhooks: WebhookLog
) -> list[web.RouteDef]:
    async def receive(request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        adapter = deps.orchestrator.providers.get(provider)
        if adapter is None:
            raise _refuse(web.HTTPNotFound, "provider not configured")
        body = await request.read()
        headers: Mapping[str, str] = request.headers
        try:
            event = await adapter.handle_webhook(
                headers, body, now=time.time(), timeout_s=WEBHOOK_TIMEOUT_S
            )
        except WebhookRejectedError as exc:
            raise _refuse(web.HTTPUnauthorized, str(exc)) from None
        except ProviderCallError as exc:
            raise _refuse(web.HTTPServiceUnavailable, str(exc)) from None

        async def act() -> tuple[web.Response, bool]:
            answer = await apply_item_webhook(deps, items, event, body)
            if answer is None:
                return web.json_response({"ignored": event.kind}), False
            return web.json_response(answer), "accepted" in answer

        return await acted_once(webhooks, event, act)

    return [web.post("/v1/webhooks/{provider}", receive)]


WEBHOOK_OPERATIONS: dict[OperationKey, Operation] = {
    ("post", "/v1/webhooks/{provider}"): {
        "summary": "A provider's webhook about an item a connection holds (signature checked): "
        "consent about to end, a login lost or repaired",
        "parameters": [
            {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {
            "200": {
                "description": "Recorded on every connection holding the item (each notice "
                "once), or ignored: not about an item's health, or an item no connection holds"
            },
            "401": {"description": "The signature or credentials are missing, forged or stale"},
            "404": {"description": "No such provider is configured"},
            "409": {
                "description": "Another delivery of the same webhook is being acted on: "
                "not acknowledged, send it again after `Retry-After` seconds"
            },
            "503": {"description": "The provider's key could not be fetched: retry later"},
        },
    },
}

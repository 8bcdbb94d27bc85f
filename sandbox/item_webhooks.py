"""`POST /_admin/webhooks/{plaid|mx}/item`: the provider tells what became of a linked item.

The sandbox plays the provider's side of an item's life after linking: a
consent about to end (Plaid `PENDING_EXPIRATION` with
`consent_expiration_time`, `PENDING_DISCONNECT` with a `reason`), a login
lost (`ERROR` with `ITEM_LOGIN_REQUIRED`) or repaired (`LOGIN_REPAIRED`);
at MX a member's `CONNECTION_STATUS` (`CHALLENGED`, `CONNECTED`, ...). The
webhook is signed as the provider signs (Plaid's ES256 JWT, MX's HTTP Basic)
and POSTed to the item's webhook URL (a link-flow Item's, or `webhook_url`);
`deliveries` > 1 sends the very same request again, as a provider retrying
a delivery does. Answers each delivery's status and body once sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from sandbox.fault_spec import Scenario, ScenarioWebhook
from sandbox.links import LINKS
from sandbox.middleware import FAULT_BOOK
from sandbox.webhooks import PLAID_SIGNING_KEY, WEBHOOK_SESSION, deliver, mx_headers, plaid_headers

MAX_DELIVERIES = 5
log = logging.getLogger(__name__)


class ItemWebhook(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which item, what to say about it, and where to send it.

    Plaid: `item_id` (an Item the link flow made, or any id for an Item made
    long ago, with `webhook_url`), `webhook_code`, and `consent_expiration_time`,
    `reason` or `error_code` as the code has them. MX: `item_id` is the
    member guid, `user_guid`, `connection_status`, and the Basic credentials.
    """

    item_id: str
    webhook_code: str | None = None
    consent_expiration_time: str | None = None
    reason: str | None = None
    error_code: str | None = None
    user_guid: str | None = None
    connection_status: str | None = None
    webhook_url: str | None = None
    webhook_username: str | None = None
    webhook_password: str | None = None
    deliveries: int = 1


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _plaid_payload(req: ItemWebhook) -> dict[str, Any] | str:
    code = req.webhook_code
    payload: dict[str, Any] = {"webhook_type": "ITEM", "webhook_code": code,
                               "item_id": req.item_id, "environment": "sandbox"}  # fmt: skip
    if code == "PENDING_EXPIRATION":
        if not req.consent_expiration_time:
            return "PENDING_EXPIRATION needs consent_expiration_time"
        payload["consent_expiration_time"] = req.consent_expiration_time
    elif code == "PENDING_DISCONNECT":
        payload["reason"] = req.reason or "INSTITUTION_TOKEN_EXPIRATION"
    elif code == "ERROR":
        error_code = req.error_code or "ITEM_LOGIN_REQUIRED"
        payload["error"] = {
            "error_type": "ITEM_ERROR",
            "error_code": error_code,
            "error_message": "the login details of this item have changed",
            "display_message": None,
        }
    elif code not in ("LOGIN_REPAIRED", "USER_PERMISSION_REVOKED"):
        return f"no item webhook {code!r}"
    return payload


def _mx_payload(req: ItemWebhook) -> dict[str, Any] | str:
    if not (req.user_guid and req.connection_status):
        return "an MX member webhook needs user_guid and connection_status"
    return {
        "type": "CONNECTION_STATUS",
        "action": "CHANGED",
        "member_guid": req.item_id,
        "user_guid": req.user_guid,
        "connection_status": req.connection_status,
    }


def _signed(
    request: web.Request, provider: str, req: ItemWebhook
) -> tuple[dict[str, Any], str, dict[str, str]] | str:
    """(payload, URL, headers) of the webhook to send, or why it cannot be sent."""
    if provider not in ("plaid", "mx"):
        return f"no item webhooks for {provider!r}"
    payload = _plaid_payload(req) if provider == "plaid" else _mx_payload(req)
    if isinstance(payload, str):
        return payload
    url = req.webhook_url
    if provider == "plaid" and url is None:
        url = request.config_dict[LINKS].plaid_item_webhook(req.item_id)
    if not url:
        return "the item has no webhook URL: give webhook_url"
    body = msgspec.json.encode(payload)
    if provider == "plaid":
        return payload, url, plaid_headers(request.config_dict[PLAID_SIGNING_KEY], body)
    return payload, url, mx_headers(req.webhook_username, req.webhook_password)


async def send_item_webhook(request: web.Request) -> web.Response:
    try:
        req = msgspec.json.decode(await request.read(), type=ItemWebhook)
    except msgspec.DecodeError as exc:
        return _bad(str(exc))
    if not 1 <= req.deliveries <= MAX_DELIVERIES:
        return _bad(f"deliveries: 1 to {MAX_DELIVERIES}")
    signed = _signed(request, request.match_info["provider"], req)
    if isinstance(signed, str):
        return _bad(signed)
    payload, url, headers = signed
    # The headers were signed over exactly these bytes: each delivery sends them again.
    body = msgspec.json.encode(payload)
    session = request.config_dict[WEBHOOK_SESSION]
    sent = []
    for _ in range(req.deliveries):
        status, error = await deliver(session, url, body, headers)
        sent.append({"webhook_status": status, "webhook_error": error})
    return web.json_response({"payload": payload, "deliveries": sent})


class ScenarioWebhooks:
    """Sends the active scenario's `item_webhooks` on its timeline.

    One task at a time: loading another scenario (or resetting to the starting
    one) cancels what the last one had yet to send and starts the new timeline.
    """

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._task: asyncio.Task[None] | None = None

    def restart(self, scenario: Scenario | None) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if scenario is not None and scenario.item_webhooks:
            self._task = asyncio.get_running_loop().create_task(
                self._run(sorted(scenario.item_webhooks, key=lambda w: w.at_s))
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, webhooks: list[ScenarioWebhook]) -> None:
        loop = asyncio.get_running_loop()
        started, loaded_at = loop.time(), datetime.now(UTC)
        for webhook in webhooks:
            await asyncio.sleep(max(0.0, started + webhook.at_s - loop.time()))
            await self._send_to_every_item(webhook, loaded_at)

    async def _send_to_every_item(self, webhook: ScenarioWebhook, loaded_at: datetime) -> None:
        links = self._app[LINKS]
        session = self._app[WEBHOOK_SESSION]
        key = self._app[PLAID_SIGNING_KEY]
        # Counted from the scenario's start, not the sending: a notice sent again
        # names the same end, as a provider re-sending the same notice does.
        expires = loaded_at + timedelta(days=webhook.consent_expires_in_days)
        for access_token, item in list(links.plaid_items.items()):
            if not item.webhook:
                continue
            request = ItemWebhook(
                item_id=links.plaid_item_id(access_token),
                webhook_code=webhook.webhook_code,
                consent_expiration_time=expires.isoformat().replace("+00:00", "Z"),
                reason=webhook.reason,
                error_code=webhook.error_code,
            )
            payload = _plaid_payload(request)
            if isinstance(payload, str):
                log.warning("scenario webhook not sent: %s", payload)
                return
            body = msgspec.json.encode(payload)
            status, error = await deliver(session, item.webhook, body, plaid_headers(key, body))
            log.info("scenario webhook %s to %s: %s %s", webhook.webhook_code, item.webhook,
                     status, error or "")  # fmt: skip


SCENARIO_WEBHOOKS = web.AppKey("scenario_webhooks", ScenarioWebhooks)


async def scenario_webhooks(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx (after the webhook session): the scenarios' item webhooks, from the start."""
    runner = app[SCENARIO_WEBHOOKS] = ScenarioWebhooks(app)
    book = app[FAULT_BOOK]
    book.on_load = runner.restart
    runner.restart(book.active_scenario)
    yield
    book.on_load = None
    await runner.stop()


ITEM_WEBHOOK_ROUTES = [web.post("/_admin/webhooks/{provider}/item", send_item_webhook)]

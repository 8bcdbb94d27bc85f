"""Finicity Data Connect webhooks: the `X-Finicity-Signature` HMAC checked, then normalised.

Mastercard documents the check: an HMAC-SHA256 of the request body keyed with
the Partner Secret, hex, in `X-Finicity-Signature`; and, against replays,
"store the eventId and ignore ones already processed". We verify the HMAC
over the *raw* body (Mastercard's Node sample re-serialises the parsed JSON,
which only matches when Finicity sends compact JSON), compare in constant
time, and judge age from the eventId, whose prefix is the event's epoch
milliseconds (`1744671850866-f9b8ef21c571b7d0e80c2c3d`). Only `ping` (sent
when a Connect URL is generated, and which must be answered 2xx) comes
without an eventId. The eventId is the webhook's `event_id`: the receiver
keeps the ones it acted on in PostgreSQL, shared by every replica
(`infra/webhook_log.py`), and a ping's is the digest of its signed body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import msgspec

from services.providers.base import WebhookEvent, WebhookRejectedError, digest_event_id
from services.providers.webhook_util import header_value

HEADER = "X-Finicity-Signature"
MAX_AGE_S = 5 * 60

_KINDS = {
    "added": "public_token",
    "invalidCredentials": "login_required",
    "accountsDeleted": "item_removed",
}


def sign(body: bytes, partner_secret: str) -> str:
    """The signature Finicity sends for `body` (the sandbox signs with this too)."""
    return hmac.new(partner_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_finicity_webhook(
    headers: Mapping[str, str], body: bytes, *, partner_secret: str, now: float, provider: str
) -> WebhookEvent:
    """Raise WebhookRejectedError unless the webhook is Finicity's and recent; normalise it."""
    signature = (header_value(headers, HEADER) or "").strip().lower()
    if not signature:
        raise WebhookRejectedError(f"{provider} webhook: no {HEADER} header")
    if not hmac.compare_digest(signature, sign(body, partner_secret)):
        raise WebhookRejectedError(f"{provider} webhook: {HEADER} does not match the body")
    try:
        event = msgspec.json.decode(body, type=dict[str, Any])
    except msgspec.DecodeError:
        raise WebhookRejectedError(f"{provider} webhook: body is not a JSON object") from None
    event_type = event.get("eventType")
    event_id = event.get("eventId")
    if event_id is None and event_type == "ping":
        return WebhookEvent(
            provider=provider, kind="other", event_id=digest_event_id(body), raw=event
        )
    sent_at = _event_time(event_id)
    if sent_at is None:
        raise WebhookRejectedError(f"{provider} webhook: no eventId to tell its age by")
    if abs(now - sent_at) > MAX_AGE_S:
        raise WebhookRejectedError(
            f"{provider} webhook: sent {now - sent_at:.0f}s from now, "
            f"outside the {MAX_AGE_S}s window"
        )
    return msgspec.structs.replace(_normalise(event, provider), event_id=f"eventId:{event_id}")


def _event_time(event_id: object) -> float | None:
    if not isinstance(event_id, str):
        return None
    millis, _, _ = event_id.partition("-")
    return int(millis) / 1000.0 if millis.isdigit() else None


def _normalise(event: dict[str, Any], provider: str) -> WebhookEvent:
    customer_id = event.get("customerId")
    payload = event.get("payload")
    login_id = None
    if isinstance(payload, dict):
        accounts = payload.get("accounts")
        first = accounts[0] if isinstance(accounts, list) and accounts else None
        if isinstance(first, dict):
            login_id = first.get("institutionLoginId")
        login_id = login_id or payload.get("institutionLoginId")
    item_id = f"{customer_id}:{login_id}" if customer_id and login_id else None
    kind = _KINDS.get(str(event.get("eventType")), "other")
    return WebhookEvent(
        provider=provider,
        kind=kind,
        item_id=item_id,
        public_token=item_id if kind == "public_token" else None,
        raw=event,
    )

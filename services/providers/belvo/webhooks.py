"""Belvo webhooks: the Authorization value we chose checked, then normalised.

Belvo signs nothing. Its dashboard takes an optional Authorization value
(`Bearer <token>` or `Basic <base64 user:password>`) that Belvo sends back
verbatim on every webhook, so that value is the shared secret: we require it
and compare it in constant time. Belvo's body carries no timestamp, so a
webhook's age cannot be judged here. Its `webhook_id` is the webhook's
`event_id` (a body without one is named by its digest): the receiver keeps
the ones it acted on in PostgreSQL, shared by every replica, for a retention
(`infra/webhook_log.py`). The value should be rotated if it ever leaks.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import msgspec

from services.providers.base import (
    WebhookEvent,
    WebhookRejectedError,
    digest_event_id,
    webhook_time,
)
from services.providers.webhook_util import header_value

_TRANSACTION_CODES = frozenset(
    {
        "historical_update",
        "new_transactions_available",
        "transactions_updated",
        "transactions_deleted",
    }
)
_LINK_CODES = frozenset(
    {"token_required", "invalid", "invalidated", "unconfirmed", "invalid_credentials"}
)
# Belvo's Open Finance consent notice (opt-in): the consent ends at `consent_due_date`.
_CONSENT_CODES = frozenset({"openfinance_consent_about_to_expire"})


def verify_belvo_webhook(
    headers: Mapping[str, str], body: bytes, *, expected: str | None, provider: str
) -> WebhookEvent:
    """Raise WebhookRejectedError unless the Authorization header is ours; normalise."""
    if not expected:
        raise WebhookRejectedError(f"{provider} webhook: no webhook authorization configured")
    given = (header_value(headers, "Authorization") or "").strip()
    if not given:
        raise WebhookRejectedError(f"{provider} webhook: no Authorization header")
    if not hmac.compare_digest(given.encode(), expected.strip().encode()):
        raise WebhookRejectedError(f"{provider} webhook: Authorization does not match")
    try:
        event = msgspec.json.decode(body, type=dict[str, Any])
    except msgspec.DecodeError:
        raise WebhookRejectedError(f"{provider} webhook: body is not a JSON object") from None
    webhook_type = str(event.get("webhook_type", "")).upper()
    code = str(event.get("webhook_code", ""))
    link_id = event.get("link_id")
    webhook_id = event.get("webhook_id") if isinstance(event.get("webhook_id"), str) else None
    kind, error_code, expires_at = "other", None, None
    if webhook_type == "TRANSACTIONS" and code in _TRANSACTION_CODES:
        kind = "transactions_updated"
    elif webhook_type in {"LINK", "LINKS"} and code in _LINK_CODES:
        kind, error_code = "login_required", code
    elif webhook_type == "CONSENT" and code in _CONSENT_CODES:
        data = event.get("data")
        due = data.get("consent_due_date") if isinstance(data, dict) else None
        kind, error_code, expires_at = "consent_expiring", code, webhook_time(due)
    return WebhookEvent(
        provider=provider,
        kind=kind,
        item_id=link_id if isinstance(link_id, str) else None,
        error_code=error_code,
        expires_at=expires_at,
        event_id=f"webhook_id:{webhook_id}" if webhook_id else digest_event_id(body),
        raw=event,
    )

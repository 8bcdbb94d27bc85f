"""MX webhooks: authenticated as MX documents it, then normalised.

MX does not sign webhook bodies. Its webhook docs (docs.mx.com/resources/webhooks)
offer HTTP Basic credentials that we give MX in its client dashboard, mutual
TLS, or an OAuth 2 bearer token. syncyard uses HTTP Basic: the adapter is
configured with the username and password MX was given, and compares the
`Authorization` header with them in constant time. MX payloads carry no
delivery timestamp, so there is no replay window to enforce: a captured
webhook replays. MX sends no event id either, so a webhook's `event_id` is
the digest of its (authenticated) body: the receiver acknowledges a body it
has already acted on without acting again, for its retention
(`infra/webhook_log.py`); past it, every reaction to a webhook is idempotent
anyway (exchanging a member twice, or syncing twice, changes nothing).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

import msgspec

from services.providers.base import WebhookEvent, WebhookRejectedError, digest_event_id
from services.providers.mx.errors import MX_CONNECTION_STATUSES
from services.providers.mx.links import public_token
from services.providers.webhook_util import header_value


class BasicCredentials(msgspec.Struct, frozen=True):
    """The username and password MX was told to send with each webhook."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r}, password='***')"

    __str__ = __repr__


def verify_basic(headers: Mapping[str, str], expected: BasicCredentials | None) -> None:
    """Raise WebhookRejectedError unless the request carries the expected Basic credentials."""
    if expected is None:
        raise WebhookRejectedError("mx webhook: no webhook credentials are configured")
    value = header_value(headers, "Authorization")
    if not value:
        raise WebhookRejectedError("mx webhook: no Authorization header")
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        raise WebhookRejectedError("mx webhook: Authorization is not HTTP Basic")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejectedError("mx webhook: Basic credentials are not base64") from None
    username, sep, password = decoded.partition(b":")
    # Both compared, always, so timing tells nothing about which one was wrong.
    user_ok = hmac.compare_digest(username, expected.username.encode())
    password_ok = hmac.compare_digest(password, expected.password.encode())
    if not (sep and user_ok and password_ok):
        raise WebhookRejectedError("mx webhook: wrong webhook credentials")


def normalise(provider: str, body: bytes) -> WebhookEvent:
    """An authenticated MX webhook body in syncyard's terms (see WebhookEvent.kind)."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise WebhookRejectedError("mx webhook: body is not JSON") from None
    if not isinstance(raw, dict):
        raise WebhookRejectedError("mx webhook: body is not a JSON object")
    type_ = str(raw.get("type", "")).upper()
    action = str(raw.get("action", "")).upper()
    user_guid = raw.get("user_guid")
    # MEMBER webhooks name the member `guid`; the others `member_guid`.
    member_guid = raw.get("member_guid") or (raw.get("guid") if type_ == "MEMBER" else None)
    member = member_guid if isinstance(member_guid, str) and member_guid else None
    status = str(raw.get("connection_status") or "").upper() or None
    kind, token, error_code = "other", None, None
    if type_ == "AGGREGATION":
        kind = "transactions_updated"
    elif type_ == "MEMBER" and action == "DELETED":
        kind = "item_removed"
    elif type_ == "MEMBER" and action == "CREATED" and member and isinstance(user_guid, str):
        kind, token = "public_token", public_token(user_guid, member)
    elif type_ in {"CONNECTION_STATUS", "MEMBER"} and status in MX_CONNECTION_STATUSES:
        rule = MX_CONNECTION_STATUSES[status or ""]
        kind = "login_required" if rule.reauth_required else "item_error"
        error_code = status
    elif type_ == "CONNECTION_STATUS" and status == "CONNECTED":
        # Back to CONNECTED: MX's word that a member needing the person works again.
        kind, error_code = "login_repaired", status
    return WebhookEvent(
        provider=provider,
        kind=kind,
        item_id=member,
        public_token=token,
        error_code=error_code,
        event_id=digest_event_id(body),
        raw=raw,
    )

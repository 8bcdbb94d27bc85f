"""Bitso's webhook deliveries: RSA-SHA256 signatures checked against Bitso's public keys.

Bitso signs the `payload` object of `{"event", "payload"}`, serialised as
compact JSON, with SHA256withRSA (PKCS#1 v1.5), and names the key in
`x-bitso-key-id`; the signature, base64, is in
`x-bitso-webhook-event-signature`. Bitso publishes its keys (base64 DER
SubjectPublicKeyInfo) at a public endpoint; here they are injected, so
where they come from stays a deployment decision.

Only the payload is signed, so only the payload is believed: what happened
is read from it (a funding has a `fid`, a withdrawal a `wid`), the unsigned
`event` must agree with it or the delivery is refused, and any other
envelope field is dropped (`WebhookEvent.raw` holds the signed payload and
the event it names, nothing else). Bitso signs no timestamp, so a replay
window cannot be enforced; the receiver deduplicates deliveries on a digest
of the signed bytes (`event_id`), kept for a retention
(`infra/webhook_log.py`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.providers.base import WebhookEvent, WebhookRejectedError, digest_event_id

SIGNATURE_HEADER = "x-bitso-webhook-event-signature"
KEY_ID_HEADER = "x-bitso-key-id"
# Events about money moving in or out (the ledger has something new to sync),
# told by the id field only their signed payloads carry.
_EVENT_BY_ID_FIELD = (("fid", "funding"), ("wid", "withdrawal"))
_EVENT_NAMES = {"fundings": "funding", "withdrawals": "withdrawal"}


def load_public_keys(encoded: Mapping[str, str]) -> dict[str, rsa.RSAPublicKey]:
    """Bitso's published keys (key id -> base64 DER) as RSA public keys."""
    keys: dict[str, rsa.RSAPublicKey] = {}
    for key_id, der_b64 in encoded.items():
        key = serialization.load_der_public_key(base64.b64decode(der_b64))
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"Bitso webhook key {key_id!r} is not an RSA key")
        keys[key_id] = key
    return keys


def signed_bytes(payload: Any) -> bytes:
    """The bytes Bitso signs: the payload as compact JSON, keys in their order."""
    return json.dumps(payload, separators=(",", ":")).encode()


def verify_delivery(
    keys: Mapping[str, rsa.RSAPublicKey], headers: Mapping[str, str], body: bytes, *, provider: str
) -> WebhookEvent:
    """Check a delivery's signature and normalise it; WebhookRejectedError if it fails."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature_b64, key_id = lowered.get(SIGNATURE_HEADER), lowered.get(KEY_ID_HEADER)
    if not signature_b64 or not key_id:
        raise WebhookRejectedError(f"{provider}: webhook has no signature or key id header")
    key = keys.get(key_id)
    if key is None:
        raise WebhookRejectedError(f"{provider}: webhook signed with an unknown key id")
    try:
        envelope = json.loads(body)
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, binascii.Error):
        raise WebhookRejectedError(f"{provider}: webhook body or signature is malformed") from None
    if not isinstance(envelope, dict) or "payload" not in envelope:
        raise WebhookRejectedError(f"{provider}: webhook body has no payload")
    payload = envelope["payload"]
    signed = signed_bytes(payload)
    try:
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise WebhookRejectedError(f"{provider}: webhook signature does not match") from None
    event = _signed_event(payload)
    claimed = envelope.get("event")
    if event is not None and claimed is not None and _EVENT_NAMES.get(claimed, claimed) != event:
        raise WebhookRejectedError(f"{provider}: the unsigned event does not match its payload")
    return WebhookEvent(
        provider=provider,
        kind="transactions_updated" if event is not None else "other",
        event_id=digest_event_id(signed),
        raw={"event": event, "payload": payload},
    )


def _signed_event(payload: Any) -> str | None:
    """What the signed payload says happened: a funding or a withdrawal, or None."""
    if isinstance(payload, dict):
        for field, event in _EVENT_BY_ID_FIELD:
            if isinstance(payload.get(field), str) and payload[field]:
                return event
    return None

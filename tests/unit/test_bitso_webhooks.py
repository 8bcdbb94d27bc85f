"""Bitso webhook signatures: RSA-SHA256 over the compact payload, key chosen by id."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.providers.base import WebhookRejectedError
from services.providers.bitso.webhooks import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    load_public_keys,
    signed_bytes,
    verify_delivery,
)

pytestmark = pytest.mark.unit

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_DER = base64.b64encode(
    PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
KEYS = load_public_keys({"key-1": PUBLIC_DER})
ENVELOPE: dict[str, Any] = {
    "event": "funding",
    "payload": {"fid": "c5b8d7f0768ee91d3b33bee648318688", "status": "complete", "amount": "1.5"},
}


def delivery(envelope: dict[str, Any], key_id: str = "key-1") -> tuple[dict[str, str], bytes]:
    signature = PRIVATE_KEY.sign(
        signed_bytes(envelope["payload"]), padding.PKCS1v15(), hashes.SHA256()
    )
    headers = {
        "X-Bitso-Webhook-Event-Signature": base64.b64encode(signature).decode(),
        "X-Bitso-Key-Id": key_id,
    }
    # Bitso's own body may be spaced differently: only the payload's compact form is signed.
    return headers, json.dumps(envelope, indent=2).encode()


def test_a_good_signature_passes_and_a_funding_means_new_ledger_entries() -> None:
    headers, body = delivery(ENVELOPE)

    event = verify_delivery(KEYS, headers, body, provider="bitso")

    assert event.kind == "transactions_updated"
    assert event.raw == ENVELOPE


def test_a_forged_payload_is_refused() -> None:
    headers, _ = delivery(ENVELOPE)
    forged = {**ENVELOPE, "payload": {**ENVELOPE["payload"], "amount": "1000"}}

    with pytest.raises(WebhookRejectedError, match="does not match"):
        verify_delivery(KEYS, headers, json.dumps(forged).encode(), provider="bitso")


@pytest.mark.parametrize("missing", [SIGNATURE_HEADER, KEY_ID_HEADER])
def test_a_missing_header_is_refused(missing: str) -> None:
    headers, body = delivery(ENVELOPE)
    headers = {k: v for k, v in headers.items() if k.lower() != missing}

    with pytest.raises(WebhookRejectedError, match="no signature or key id"):
        verify_delivery(KEYS, headers, body, provider="bitso")


def test_an_unknown_key_id_is_refused() -> None:
    headers, body = delivery(ENVELOPE, key_id="key-2")

    with pytest.raises(WebhookRejectedError, match="unknown key id"):
        verify_delivery(KEYS, headers, body, provider="bitso")


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"event": "funding"}'])
def test_a_body_without_a_payload_is_refused(body: bytes) -> None:
    headers, _ = delivery(ENVELOPE)

    with pytest.raises(WebhookRejectedError):
        verify_delivery(KEYS, headers, body, provider="bitso")


def test_a_signature_that_is_not_base64_is_refused() -> None:
    headers, body = delivery(ENVELOPE)
    headers["X-Bitso-Webhook-Event-Signature"] = "%%%not-base64%%%"

    with pytest.raises(WebhookRejectedError, match="malformed"):
        verify_delivery(KEYS, headers, body, provider="bitso")


def test_only_the_signed_payload_is_believed_and_unsigned_fields_are_dropped() -> None:
    honest_headers, honest_body = delivery(ENVELOPE)
    lying = {**ENVELOPE, "account": "someone-else", "event_id": "evt-1", "id": "x"}
    headers, body = delivery(lying)

    honest = verify_delivery(KEYS, honest_headers, honest_body, provider="bitso")
    event = verify_delivery(KEYS, headers, body, provider="bitso")

    assert event.raw == {"event": "funding", "payload": ENVELOPE["payload"]}
    # Named by what is signed: the lying envelope's own id changes nothing.
    assert event.event_id == honest.event_id
    assert event.event_id is not None and event.event_id.startswith("sha256:")


def test_an_unsigned_event_type_that_contradicts_the_payload_is_refused() -> None:
    headers, body = delivery({**ENVELOPE, "event": "withdrawal"})

    with pytest.raises(WebhookRejectedError, match="unsigned event does not match"):
        verify_delivery(KEYS, headers, body, provider="bitso")


def test_an_unsigned_event_type_over_a_payload_naming_no_money_movement_means_nothing() -> None:
    headers, body = delivery({"event": "funding", "payload": {"status": "complete"}})

    event = verify_delivery(KEYS, headers, body, provider="bitso")

    assert event.kind == "other"
    assert event.raw == {"event": None, "payload": {"status": "complete"}}


def test_a_withdrawal_is_told_by_its_signed_wid_and_its_plural_event_name_agrees() -> None:
    payload = {"wid": "w-1", "status": "complete"}
    headers, body = delivery({"event": "withdrawals", "payload": payload})

    event = verify_delivery(KEYS, headers, body, provider="bitso")

    assert event.kind == "transactions_updated"
    assert event.raw == {"event": "withdrawal", "payload": payload}

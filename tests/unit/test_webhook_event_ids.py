"""Each provider's verified webhook names itself (`event_id`), for the receiver to deduplicate."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from services.providers.base import digest_event_id
from services.providers.belvo.webhooks import verify_belvo_webhook
from services.providers.finicity.webhooks import sign, verify_finicity_webhook
from services.providers.mx.webhooks import normalise as mx_normalise
from services.providers.plaid.webhooks import event_id as plaid_event_id
from tests.unit.test_plaid_webhooks import BODY, NOW, signed

pytestmark = pytest.mark.unit

PARTNER_SECRET = "partner-secret"
BELVO_AUTH = "Bearer belvo-webhook-secret"


def _finicity(event: Mapping[str, object]) -> str | None:
    body = json.dumps(event).encode()
    headers = {"X-Finicity-Signature": sign(body, PARTNER_SECRET)}
    return verify_finicity_webhook(
        headers, body, partner_secret=PARTNER_SECRET, now=NOW, provider="finicity"
    ).event_id


def _belvo(event: Mapping[str, object]) -> str | None:
    body = json.dumps(event).encode()
    headers = {"Authorization": BELVO_AUTH}
    return verify_belvo_webhook(headers, body, expected=BELVO_AUTH, provider="belvo").event_id


def test_finicity_webhooks_are_named_by_their_event_id_and_a_ping_by_its_digest() -> None:
    event_id = f"{int(NOW * 1000)}-f9b8ef21c571b7d0e80c2c3d"
    added = {"eventType": "added", "eventId": event_id, "customerId": "1005061234"}

    assert _finicity(added) == f"eventId:{event_id}"
    assert _finicity({**added, "payload": {"other": 1}}) == f"eventId:{event_id}"
    ping = {"eventType": "ping"}
    assert _finicity(ping) == digest_event_id(json.dumps(ping).encode())


def test_belvo_webhooks_are_named_by_their_webhook_id_or_else_by_their_digest() -> None:
    event = {"webhook_id": "aadf41a1fc8e4f79a49f7f04027ac999", "webhook_type": "TRANSACTIONS"}

    assert _belvo(event) == "webhook_id:aadf41a1fc8e4f79a49f7f04027ac999"
    without = {"webhook_type": "TRANSACTIONS", "link_id": "l-1"}
    assert _belvo(without) == digest_event_id(json.dumps(without).encode())


def test_mx_webhooks_carry_no_id_and_are_named_by_their_body_s_digest() -> None:
    body = b'{"type": "AGGREGATION", "member_guid": "MBR-1", "completed_at": 1}'

    assert mx_normalise("mx", body).event_id == digest_event_id(body)
    assert mx_normalise("mx", body.replace(b"1}", b"2}")).event_id != digest_event_id(body)


def test_plaid_deliveries_are_named_by_their_signed_claims_so_a_resend_is_a_new_delivery() -> None:
    first, signed_again, resent = signed(BODY), signed(BODY), signed(BODY, iat=NOW + 30)

    # ECDSA signs anew each time (and a signature can be altered and stay valid):
    # the signature is no part of the name, the signed header and claims are.
    assert first != signed_again
    assert plaid_event_id(first) == plaid_event_id(signed_again)
    assert plaid_event_id(first) != plaid_event_id(resent)
    header_and_claims = first["Plaid-Verification"].rpartition(".")[0]
    assert plaid_event_id(first) == digest_event_id(header_and_claims.encode())

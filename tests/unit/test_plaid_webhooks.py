"""Plaid webhook verification: the Plaid-Verification JWT, checked step by step."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.providers.base import WebhookRejectedError
from services.providers.plaid.webhooks import (
    FAILED_KID_BACKOFF_S,
    NEW_KID_FETCHES_PER_WINDOW,
    PlaidWebhookVerifier,
    normalise,
)
from services.providers.plaid.wire import Jwk

pytestmark = pytest.mark.unit

NOW = 1_750_000_000.0
KID = "6c5516e1-92dc-479e-a8ff-5a51992e0001"
BODY = b'{"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE"}'


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str = KID) -> Jwk:
    fields = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return msgspec.convert({**fields, "kid": kid, "alg": "ES256", "use": "sig"}, type=Jwk)


PLAID_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def signed(
    body: bytes = BODY,
    *,
    key: ec.EllipticCurvePrivateKey = PLAID_KEY,
    iat: float = NOW,
    kid: str = KID,
    claims: dict[str, object] | None = None,
) -> dict[str, str]:
    payload = claims or {"iat": int(iat), "request_body_sha256": hashlib.sha256(body).hexdigest()}
    token = jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid})
    return {"Plaid-Verification": token}


class FakePlaidKeys:
    """Plaid's /webhook_verification_key/get, counting how often it is asked."""

    def __init__(self, *keys: Jwk) -> None:
        self.keys = {k.kid: k for k in keys}
        self.fetches = 0

    async def __call__(self, kid: str, timeout_s: float) -> Jwk:
        self.fetches += 1
        if kid not in self.keys:
            raise WebhookRejectedError("plaid webhook: Plaid knows no such key id")
        return self.keys[kid]


async def verify(headers: dict[str, str], body: bytes = BODY, now: float = NOW) -> None:
    verifier = PlaidWebhookVerifier(FakePlaidKeys(public_jwk(PLAID_KEY)))
    await verifier.verify(headers, body, now=now, timeout_s=1.0)


async def test_a_webhook_signed_by_plaid_s_key_passes() -> None:
    await verify(signed())


async def test_the_header_is_found_whatever_its_case() -> None:
    headers = {"plaid-verification": signed()["Plaid-Verification"]}

    await verify(headers)


async def test_a_webhook_without_the_header_is_refused() -> None:
    with pytest.raises(WebhookRejectedError, match="no Plaid-Verification header"):
        await verify({})


async def test_a_webhook_signed_by_another_key_is_refused_as_forged() -> None:
    with pytest.raises(WebhookRejectedError, match="signature does not verify"):
        await verify(signed(key=OTHER_KEY))


async def test_a_webhook_issued_over_five_minutes_ago_is_refused_as_stale() -> None:
    with pytest.raises(WebhookRejectedError, match="outside the 300s window"):
        await verify(signed(iat=NOW - 301))


async def test_a_webhook_issued_four_minutes_ago_still_passes() -> None:
    await verify(signed(iat=NOW - 240))


async def test_a_body_changed_after_signing_is_refused() -> None:
    with pytest.raises(WebhookRejectedError, match="body does not match"):
        await verify(signed(), body=BODY.replace(b"SYNC", b"SINK"))


async def test_a_token_using_another_algorithm_is_refused() -> None:
    token = jwt.encode(
        {"iat": int(NOW)}, "a-shared-secret-long-enough-for-hs256!", "HS256", headers={"kid": KID}
    )

    with pytest.raises(WebhookRejectedError, match="not ES256"):
        await verify({"Plaid-Verification": token})


async def test_a_header_that_is_not_a_jwt_is_refused() -> None:
    with pytest.raises(WebhookRejectedError, match="not a JWT"):
        await verify({"Plaid-Verification": "hello"})


async def test_a_key_id_plaid_does_not_know_is_refused() -> None:
    with pytest.raises(WebhookRejectedError, match="no such key id"):
        await verify(signed(kid="made-up"))


async def test_a_token_without_the_body_hash_claim_is_refused() -> None:
    with pytest.raises(WebhookRejectedError, match="request_body_sha256"):
        await verify(signed(claims={"iat": int(NOW)}))


async def test_a_key_plaid_has_expired_no_longer_verifies() -> None:
    expired = msgspec.structs.replace(public_jwk(PLAID_KEY), expired_at=int(NOW) - 10)
    verifier = PlaidWebhookVerifier(FakePlaidKeys(expired))

    with pytest.raises(WebhookRejectedError, match="expired"):
        await verifier.verify(signed(), BODY, now=NOW, timeout_s=1.0)


async def test_keys_are_fetched_once_per_kid_and_again_after_an_hour() -> None:
    keys = FakePlaidKeys(public_jwk(PLAID_KEY))
    verifier = PlaidWebhookVerifier(keys)

    for offset in (0, 10, 20):
        await verifier.verify(signed(iat=NOW + offset), BODY, now=NOW + offset, timeout_s=1.0)
    assert keys.fetches == 1
    later = NOW + 3601
    await verifier.verify(signed(iat=later), BODY, now=later, timeout_s=1.0)
    assert keys.fetches == 2


def webhook(**fields: object) -> bytes:
    return msgspec.json.encode({"environment": "sandbox", **fields})


@pytest.mark.parametrize(
    ("fields", "kind", "error_code"),
    [
        (
            {"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE"},
            "transactions_updated",
            None,
        ),
        (
            {"webhook_type": "ITEM", "webhook_code": "PENDING_EXPIRATION"},
            "consent_expiring",
            "PENDING_EXPIRATION",
        ),
        (
            {"webhook_type": "ITEM", "webhook_code": "PENDING_DISCONNECT", "reason": "X"},
            "consent_expiring",
            "PENDING_DISCONNECT",
        ),
        (
            {"webhook_type": "ITEM", "webhook_code": "LOGIN_REPAIRED"},
            "login_repaired",
            "LOGIN_REPAIRED",
        ),
        (
            {
                "webhook_type": "ITEM",
                "webhook_code": "ERROR",
                "error": {"error_code": "ITEM_LOGIN_REQUIRED"},
            },
            "login_required",
            "ITEM_LOGIN_REQUIRED",
        ),
        (
            {
                "webhook_type": "ITEM",
                "webhook_code": "ERROR",
                "error": {"error_code": "INSTITUTION_DOWN"},
            },
            "item_error",
            "INSTITUTION_DOWN",
        ),
        ({"webhook_type": "ITEM", "webhook_code": "USER_PERMISSION_REVOKED"}, "item_removed", None),
        ({"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED"}, "other", None),
        (
            {"webhook_type": "LINK", "webhook_code": "SESSION_FINISHED", "public_tokens": []},
            "other",
            None,
        ),
    ],
)
def test_plaid_webhooks_are_normalised_by_type_and_code(
    fields: dict[str, object], kind: str, error_code: str | None
) -> None:
    event = normalise("plaid", webhook(item_id="item-1", **fields))

    assert (event.kind, event.error_code, event.item_id) == (kind, error_code, "item-1")


def test_a_pending_expiration_says_when_the_consent_ends() -> None:
    body = webhook(
        webhook_type="ITEM",
        webhook_code="PENDING_EXPIRATION",
        item_id="item-1",
        consent_expiration_time="2026-12-11T13:25:17.766Z",
    )
    event = normalise("plaid", body)
    assert event.expires_at is not None
    assert event.expires_at.isoformat() == "2026-12-11T13:25:17.766000+00:00"


def test_a_finished_link_session_carries_its_public_token_and_its_link_token() -> None:
    body = webhook(
        webhook_type="LINK",
        webhook_code="SESSION_FINISHED",
        status="SUCCESS",
        link_token="link-sandbox-abcd",
        public_tokens=["public-sandbox-1234"],
    )

    event = normalise("plaid", body)

    assert (event.kind, event.public_token) == ("public_token", "public-sandbox-1234")
    assert event.link_token == "link-sandbox-abcd"


def test_a_webhook_about_no_link_session_names_none() -> None:
    body = webhook(webhook_type="TRANSACTIONS", webhook_code="SYNC_UPDATES_AVAILABLE")

    assert normalise("plaid", body).link_token is None


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]"])
def test_a_verified_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(WebhookRejectedError):
        normalise("plaid", body)


async def _forged(verifier: PlaidWebhookVerifier, kid: str, now: float = NOW) -> None:
    with pytest.raises(WebhookRejectedError):
        await verifier.verify(signed(kid=kid, iat=now), BODY, now=now, timeout_s=1.0)


async def test_a_burst_of_random_kids_makes_at_most_one_key_fetch_per_kid_per_backoff() -> None:
    plaid = FakePlaidKeys(public_jwk(PLAID_KEY))
    verifier = PlaidWebhookVerifier(plaid)
    kids = [str(uuid.uuid4()) for _ in range(5)]

    # Twenty concurrent webhooks per forged kid: one fetch each, shared.
    await asyncio.gather(*(_forged(verifier, kid) for kid in kids * 20))
    assert plaid.fetches == len(kids)

    # Within the backoff window, no kid is asked again.
    later = NOW + FAILED_KID_BACKOFF_S - 1
    await asyncio.gather(*(_forged(verifier, kid, later) for kid in kids * 5))
    assert plaid.fetches == len(kids)

    # After it, once more each; then the backoff has doubled.
    after = NOW + FAILED_KID_BACKOFF_S + 1
    await asyncio.gather(*(_forged(verifier, kid, after) for kid in kids * 5))
    assert plaid.fetches == 2 * len(kids)
    await asyncio.gather(
        *(_forged(verifier, kid, after + FAILED_KID_BACKOFF_S + 1) for kid in kids)
    )
    assert plaid.fetches == 2 * len(kids)


async def test_fresh_random_kids_cost_plaid_a_bounded_number_of_calls() -> None:
    plaid = FakePlaidKeys(public_jwk(PLAID_KEY))
    verifier = PlaidWebhookVerifier(plaid)
    await verifier.verify(signed(), BODY, now=NOW, timeout_s=1.0)

    await asyncio.gather(*(_forged(verifier, str(uuid.uuid4())) for _ in range(200)))

    assert plaid.fetches <= 1 + NEW_KID_FETCHES_PER_WINDOW
    await verifier.verify(signed(), BODY, now=NOW, timeout_s=1.0)  # cached: no fetch needed

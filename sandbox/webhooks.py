"""Webhooks the sandbox sends, signed as each provider signs them.

Plaid: an ES256 JWT in `Plaid-Verification` ({iat, request_body_sha256}),
signed by a P-256 key derived from the seed and served, as a JWK, by the fake
`/webhook_verification_key/get`. MX: no signature (MX signs nothing); HTTP
Basic credentials, the ones a partner gives MX in its dashboard.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import msgspec
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

WEBHOOK_SESSION = web.AppKey("webhook_session", aiohttp.ClientSession)


class SigningKey(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    jwk: dict[str, Any]
    pem: bytes


PLAID_SIGNING_KEY = web.AppKey("plaid_signing_key", SigningKey)


def _b64url(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


def plaid_signing_key(seed: int) -> SigningKey:
    """The sandbox's webhook key for `seed`: the same key, and kid, on every start."""
    digest = hashlib.sha256(f"{seed}:plaid-webhook-key".encode()).digest()
    # Any integer below the curve order is a valid private value.
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    private = ec.derive_private_key(int.from_bytes(digest, "big") % (order - 1) + 1, ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    kid = hashlib.sha256(digest).hexdigest()[:32]
    jwk = {
        "alg": "ES256",
        "crv": "P-256",
        "kid": kid,
        "kty": "EC",
        "use": "sig",
        "x": _b64url(numbers.x),
        "y": _b64url(numbers.y),
        "created_at": 1_700_000_000,
        "expired_at": None,
    }
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(kid=kid, jwk=jwk, pem=pem)


def plaid_headers(key: SigningKey, body: bytes, *, now: float | None = None) -> dict[str, str]:
    claims = {
        "iat": int(time.time() if now is None else now),
        "request_body_sha256": hashlib.sha256(body).hexdigest(),
    }
    token = jwt.encode(claims, key.pem, algorithm="ES256", headers={"kid": key.kid})
    return {"Plaid-Verification": token, "Content-Type": "application/json"}


def mx_headers(username: str | None, password: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if username is not None and password is not None:
        headers["Authorization"] = aiohttp.encode_basic_auth(username, password)
    return headers


async def deliver(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int | None, str | None]:
    """POST one webhook; (status, None) or (None, why it could not be delivered)."""
    try:
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            await response.read()
            return response.status, None
    except TimeoutError:
        return None, "timeout"
    except (aiohttp.ClientError, OSError) as exc:
        return None, type(exc).__name__


async def webhook_session(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: one client session for every webhook the sandbox sends."""
    async with aiohttp.ClientSession() as session:
        app[WEBHOOK_SESSION] = session
        yield

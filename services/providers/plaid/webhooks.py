"""Plaid webhooks: the `Plaid-Verification` JWT checked as Plaid documents it, then normalised.

Plaid signs each webhook with an ES256 JWT whose header names the key (`kid`)
and whose claims carry `iat` and `request_body_sha256`. We fetch the public
key from `/webhook_verification_key/get` (cached by kid; a kid Plaid does not
know is cached as a failure with a backoff, and fresh kids are fetched at a
bounded rate, so forged webhooks cannot make us call Plaid), refuse any other
algorithm, verify the signature, refuse tokens issued more than five minutes
from `now`, and compare the body's SHA-256 with the claim in constant time.

Plaid's webhooks carry no id of their own, and two of them may have the
same body (`SYNC_UPDATES_AVAILABLE` for an item, `LOGIN_REPAIRED` after a
second repair). What Plaid signs per delivery is the JWT's header and
claims (its `iat` and the body's hash), so a webhook's `event_id` is their
digest: the same delivery replayed is the same id, and replays older than
the five minutes are refused by `iat` anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jwt
import msgspec

from services.providers.base import (
    WebhookEvent,
    WebhookRejectedError,
    digest_event_id,
    webhook_time,
)
from services.providers.plaid.wire import Jwk
from services.providers.webhook_util import header_value

HEADER = "Plaid-Verification"
MAX_AGE_S = 5 * 60
# A cached key is asked for again after this long, so a key Plaid has since
# expired stops verifying within the hour.
KEY_TTL_S = 60 * 60
# A kid Plaid does not know is remembered as such: asked again only after this
# long, doubling on each further miss up to FAILED_KID_MAX_BACKOFF_S, so a
# webhook forged with a random kid cannot make us call Plaid every time.
FAILED_KID_BACKOFF_S = 60.0
FAILED_KID_MAX_BACKOFF_S = 60 * 60.0
FAILED_KIDS_KEPT = 4096
# And kids never seen before are fetched at most this often: a burst of fresh
# random kids costs Plaid a handful of calls, not one per webhook. Plaid itself
# rotates keys rarely, and retries a webhook we refuse.
NEW_KID_FETCHES_PER_WINDOW = 10
NEW_KID_WINDOW_S = 60.0
MAX_KID_CHARS = 128

KeyFetcher = Callable[[str, float], Awaitable[Jwk]]


class PlaidWebhookVerifier:
    """Verifies `Plaid-Verification` JWTs, caching Plaid's keys by kid."""

    def __init__(self, fetch_key: KeyFetcher) -> None:
        self._fetch_key = fetch_key
        self._keys: dict[str, tuple[Jwk, float]] = {}
        # kid -> (when it may be asked again, the backoff that set it); bounded.
        self._failed: OrderedDict[str, tuple[float, float]] = OrderedDict()
        # One fetch per kid at a time: concurrent webhooks with one kid share it.
        self._in_flight: dict[str, asyncio.Future[Jwk]] = {}
        self._new_kid_fetches: list[float] = []

    async def verify(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> float:
        """Raise WebhookRejectedError unless the webhook is Plaid's, recent and unaltered;
        answer when Plaid signed it (its `iat`)."""
        token = header_value(headers, HEADER)
        if not token:
            raise WebhookRejectedError(f"plaid webhook: no {HEADER} header")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise WebhookRejectedError(f"plaid webhook: {HEADER} is not a JWT") from None
        if header.get("alg") != "ES256":
            raise WebhookRejectedError("plaid webhook: JWT algorithm is not ES256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise WebhookRejectedError("plaid webhook: JWT header names no key id")
        if len(kid) > MAX_KID_CHARS:
            raise WebhookRejectedError("plaid webhook: JWT key id is too long")
        key = await self._key(kid, now=now, timeout_s=timeout_s)
        if key.expired_at is not None:
            raise WebhookRejectedError("plaid webhook: signed with a key Plaid has expired")
        claims = _verified_claims(token, key)
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise WebhookRejectedError("plaid webhook: JWT has no numeric iat")
        if abs(now - iat) > MAX_AGE_S:
            raise WebhookRejectedError(
                f"plaid webhook: issued {now - iat:.0f}s from now, outside the {MAX_AGE_S}s window"
            )
        claimed = claims.get("request_body_sha256")
        actual = hashlib.sha256(body).hexdigest()
        if not isinstance(claimed, str) or not hmac.compare_digest(claimed, actual):
            raise WebhookRejectedError("plaid webhook: body does not match the signed SHA-256")
        return float(iat)

    async def _key(self, kid: str, *, now: float, timeout_s: float) -> Jwk:
        cached = self._keys.get(kid)
        if cached is not None and now - cached[1] < KEY_TTL_S:
            return cached[0]
        failed = self._failed.get(kid)
        if failed is not None and now < failed[0]:
            raise WebhookRejectedError("plaid webhook: Plaid knows no such key id")
        pending = self._in_flight.get(kid)
        if pending is not None:
            return await asyncio.shield(pending)
        if cached is None and failed is None:
            self._take_new_kid_budget(now)
        fetch = asyncio.ensure_future(self._fetch_key(kid, timeout_s))
        self._in_flight[kid] = fetch
        try:
            key = await asyncio.shield(fetch)
        except WebhookRejectedError:
            # Plaid said it knows no such key: remembered, with a growing backoff.
            backoff = FAILED_KID_BACKOFF_S if failed is None else failed[1] * 2
            backoff = min(backoff, FAILED_KID_MAX_BACKOFF_S)
            self._failed[kid] = (now + backoff, backoff)
            self._failed.move_to_end(kid)
            while len(self._failed) > FAILED_KIDS_KEPT:
                self._failed.popitem(last=False)
            raise
        finally:
            self._in_flight.pop(kid, None)
        # Only keys Plaid actually returned are cached as keys.
        self._keys[kid] = (key, now)
        self._failed.pop(kid, None)
        return key

    def _take_new_kid_budget(self, now: float) -> None:
        """Count one fetch of a never-seen kid, or refuse it if the window's budget is spent."""
        recent = [t for t in self._new_kid_fetches if now - t < NEW_KID_WINDOW_S]
        if len(recent) >= NEW_KID_FETCHES_PER_WINDOW:
            self._new_kid_fetches = recent
            raise WebhookRejectedError(
                "plaid webhook: too many unknown key ids lately; not asking Plaid now"
            )
        recent.append(now)
        self._new_kid_fetches = recent


def _verified_claims(token: str, key: Jwk) -> dict[str, Any]:
    try:
        public_key = jwt.PyJWK(msgspec.to_builtins(key), algorithm="ES256")
        # Times are checked against the injected `now` by the caller, not the clock.
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=["ES256"],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": ["iat", "request_body_sha256"],
            },
        )
    except jwt.InvalidSignatureError:
        raise WebhookRejectedError("plaid webhook: JWT signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise WebhookRejectedError(f"plaid webhook: JWT lacks the {exc.claim} claim") from None
    except (jwt.InvalidTokenError, jwt.PyJWKError):
        raise WebhookRejectedError("plaid webhook: JWT or key is malformed") from None
    return claims


def event_id(headers: Mapping[str, str]) -> str:
    """A verified delivery's id for deduplication: the digest of what its JWT signs.

    The JWT's header and claims, not the signature: an ECDSA signature can be
    recomputed, or its `s` negated, into another valid one over the same
    claims, which would make a replay look new.
    """
    header_and_claims, _, _ = (header_value(headers, HEADER) or "").rpartition(".")
    return digest_event_id(header_and_claims.encode())


_ITEM_REMOVED_CODES = frozenset({"USER_PERMISSION_REVOKED", "USER_ACCOUNT_REVOKED"})
_LOGIN_ERRORS = frozenset({"ITEM_LOGIN_REQUIRED"})
# Notices ahead of time, not errors: the Item still works until its consent ends
# (PENDING_EXPIRATION: EU and UK, with `consent_expiration_time`, 7 days ahead;
# PENDING_DISCONNECT: US and Canada, with a `reason`, 7 days ahead).
_CONSENT_NOTICES = frozenset({"PENDING_EXPIRATION", "PENDING_DISCONNECT"})


def normalise(provider: str, body: bytes) -> WebhookEvent:
    """A verified Plaid webhook body in syncyard's terms (see WebhookEvent.kind)."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise WebhookRejectedError("plaid webhook: body is not JSON") from None
    if not isinstance(raw, dict):
        raise WebhookRejectedError("plaid webhook: body is not a JSON object")
    kind_of = (str(raw.get("webhook_type", "")), str(raw.get("webhook_code", "")))
    error = raw.get("error") if isinstance(raw.get("error"), dict) else None
    error_code = str(error["error_code"]) if error and "error_code" in error else None
    item_id = raw.get("item_id") if isinstance(raw.get("item_id"), str) else None
    public_token = None
    kind = "other"
    if kind_of == ("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE"):
        kind = "transactions_updated"
    elif kind_of[0] == "ITEM" and kind_of[1] in _ITEM_REMOVED_CODES:
        kind = "item_removed"
    elif kind_of[0] == "ITEM" and kind_of[1] in _CONSENT_NOTICES:
        kind, error_code = "consent_expiring", kind_of[1]
    elif kind_of == ("ITEM", "LOGIN_REPAIRED"):
        kind, error_code = "login_repaired", kind_of[1]
    elif kind_of[0] == "ITEM" and (kind_of[1] in _LOGIN_ERRORS or error_code in _LOGIN_ERRORS):
        kind = "login_required"
    elif kind_of == ("ITEM", "ERROR"):
        kind = "item_error"
    elif kind_of[0] == "LINK" and kind_of[1] in {"SESSION_FINISHED", "ITEM_ADD_RESULT"}:
        tokens = raw.get("public_tokens") or [raw.get("public_token")]
        first = tokens[0] if isinstance(tokens, list) and tokens else None
        if isinstance(first, str) and first:
            kind, public_token = "public_token", first
    link_token = raw.get("link_token")
    return WebhookEvent(
        provider=provider,
        kind=kind,
        item_id=item_id,
        public_token=public_token,
        link_token=link_token if isinstance(link_token, str) and link_token else None,
        error_code=error_code,
        expires_at=webhook_time(raw.get("consent_expiration_time")),
        raw=raw,
    )

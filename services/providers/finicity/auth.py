"""Finicity's app token: fetched once, shared by every call, renewed before it lapses.

Finicity issues a token for Partner ID + Partner Secret
(`POST /aggregation/v2/partners/authentication`), valid for two hours, and
advises renewing it after 90 minutes. Five failed attempts lock the partner
account, so one lock serialises renewals: a burst of calls with an expired
token asks Finicity once, not once per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from services.providers.finicity.errors import finicity_error
from services.providers.finicity.wire import TokenResponse
from services.providers.http import decode_json, send

AUTH_PATH = "/aggregation/v2/partners/authentication"
TOKEN_TTL_S = 90 * 60


class AppTokenCache:
    """Holds the current Finicity-App-Token and renews it on age or on demand."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        partner_id: str,
        partner_secret: str,
        app_key: str,
        provider: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = base_url + AUTH_PATH
        self._partner_id = partner_id
        self._partner_secret = partner_secret
        self._app_key = app_key
        self._provider = provider
        self._clock = clock
        self._token: str | None = None
        self._issued_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self, *, timeout_s: float) -> str:
        """A token young enough to use, fetching a new one if needed."""
        async with self._lock:
            if self._token is None or self._clock() - self._issued_at >= TOKEN_TTL_S:
                return await self._renew(timeout_s)
            return self._token

    async def refresh(self, stale: str, *, timeout_s: float) -> str:
        """Replace `stale`, refused by Finicity; a caller that lost the race reuses the new one."""
        async with self._lock:
            if self._token is None or self._token == stale:
                return await self._renew(timeout_s)
            return self._token

    async def _renew(self, timeout_s: float) -> str:
        self._token = None
        reply = await send(
            self._session,
            "POST",
            self._url,
            provider=self._provider,
            endpoint=AUTH_PATH,
            timeout_s=timeout_s,
            json_body={"partnerId": self._partner_id, "partnerSecret": self._partner_secret},
            headers={"Finicity-App-Key": self._app_key},
        )
        if not reply.ok:
            raise finicity_error(
                reply.status,
                reply.body,
                provider=self._provider,
                retry_after_s=reply.retry_after_s,
                secrets=(self._partner_secret, self._app_key),
                endpoint=AUTH_PATH,
            )
        parsed = decode_json(reply, TokenResponse, provider=self._provider, endpoint=AUTH_PATH)
        self._token, self._issued_at = parsed.token, self._clock()
        return parsed.token

"""One authenticated Finicity call: app key and token headers, a renewal on 401, errors mapped.

Messages name endpoint templates (`/aggregation/v1/customers/{customerId}/...`),
never URLs: a customer id is what reaches a person's data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from services.providers.finicity.auth import AppTokenCache
from services.providers.finicity.errors import finicity_error
from services.providers.http import HttpReply, decode_json, send

T = TypeVar("T")


class FinicityClient:
    """Finicity's HTTP API with Finicity-App-Key and a cached Finicity-App-Token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        partner_id: str,
        partner_secret: str,
        app_key: str,
        provider: str,
        max_timeout_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.partner_id = partner_id
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._app_key = app_key
        self._secrets = (partner_secret, app_key)
        self._max_timeout_s = max_timeout_s
        self._tokens = AppTokenCache(
            session,
            base_url=self._base_url,
            partner_id=partner_id,
            partner_secret=partner_secret,
            app_key=app_key,
            provider=provider,
            clock=monotonic,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        timeout_s: float,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        secrets: tuple[str, ...] = (),
    ) -> HttpReply:
        """Send one request; a 401 renews the token and tries once more."""
        timeout_s = min(timeout_s, self._max_timeout_s)
        token = await self._tokens.token(timeout_s=timeout_s)
        reply = await self._send(
            method=method,
            path=path,
            endpoint=endpoint,
            timeout_s=timeout_s,
            token=token,
            params=params,
            json_body=json_body,
        )
        if reply.status == 401:
            # Finicity may revoke a token before 90 minutes; a fresh one settles
            # whether the key itself is refused.
            token = await self._tokens.refresh(token, timeout_s=timeout_s)
            reply = await self._send(
                method=method,
                path=path,
                endpoint=endpoint,
                timeout_s=timeout_s,
                token=token,
                params=params,
                json_body=json_body,
            )
        if not reply.ok:
            raise finicity_error(
                reply.status,
                reply.body,
                provider=self.provider,
                retry_after_s=reply.retry_after_s,
                secrets=(*self._secrets, token, *secrets),
                endpoint=endpoint,
            )
        return reply

    async def get_json(
        self,
        path: str,
        type_: type[T],
        *,
        endpoint: str,
        timeout_s: float,
        params: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> T:
        reply = await self.call(
            "GET", path, endpoint=endpoint, timeout_s=timeout_s, params=params, secrets=secrets
        )
        return decode_json(reply, type_, provider=self.provider, endpoint=endpoint)

    async def post_json(
        self,
        path: str,
        body: Any,
        type_: type[T],
        *,
        endpoint: str,
        timeout_s: float,
        secrets: tuple[str, ...] = (),
    ) -> T:
        reply = await self.call(
            "POST", path, endpoint=endpoint, timeout_s=timeout_s, json_body=body, secrets=secrets
        )
        return decode_json(reply, type_, provider=self.provider, endpoint=endpoint)

    async def _send(
        self,
        *,
        method: str,
        path: str,
        endpoint: str,
        timeout_s: float,
        token: str,
        params: Mapping[str, str] | None,
        json_body: Any,
    ) -> HttpReply:
        return await send(
            self._session,
            method,
            self._base_url + path,
            provider=self.provider,
            endpoint=endpoint,
            timeout_s=timeout_s,
            json_body=json_body,
            params=params,
            headers={"Finicity-App-Key": self._app_key, "Finicity-App-Token": token},
        )

"""One Belvo call with HTTP Basic (secret id : secret password), errors classified.

Messages name endpoint templates, never URLs: a link id in a query is what
reaches a person's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import aiohttp

from services.providers.base import ProviderCallError
from services.providers.belvo.errors import belvo_error
from services.providers.http import INVALID_INPUT, HttpReply, decode_json, send

T = TypeVar("T")


class BelvoClient:
    """Belvo's HTTP API under one base URL."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        secret_id: str,
        secret_password: str,
        provider: str,
        max_timeout_s: float,
    ) -> None:
        self.provider = provider
        self.secret_id = secret_id
        self.secret_password = secret_password
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._auth = {"Authorization": aiohttp.encode_basic_auth(secret_id, secret_password)}
        self._max_timeout_s = max_timeout_s

    async def call(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        timeout_s: float,
        params: Mapping[str, str] | str | None = None,
        json_body: Any = None,
        secrets: tuple[str, ...] = (),
        auth: bool = True,
    ) -> HttpReply:
        url = self._base_url + path
        if isinstance(params, str):
            url, params = f"{url}?{params}" if params else url, None
        reply = await send(
            self._session,
            method,
            url,
            provider=self.provider,
            endpoint=endpoint,
            timeout_s=min(timeout_s, self._max_timeout_s),
            json_body=json_body,
            params=params,
            headers=self._auth if auth else None,
        )
        if not reply.ok:
            raise belvo_error(
                reply.status,
                reply.body,
                provider=self.provider,
                retry_after_s=reply.retry_after_s,
                secrets=(self.secret_password, self.secret_id, *secrets),
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
        params: Mapping[str, str] | str | None = None,
        secrets: tuple[str, ...] = (),
    ) -> T:
        reply = await self.call(
            "GET", path, endpoint=endpoint, timeout_s=timeout_s, params=params, secrets=secrets
        )
        return decode_json(reply, type_, provider=self.provider, endpoint=endpoint)

    def next_query(self, next_url: str | None, *, path: str) -> str | None:
        """The query string of Belvo's `next` URL, refused unless it pages `path`."""
        if not next_url:
            return None
        parts = urlsplit(next_url)
        if not parts.path.endswith(path):
            raise self.invalid(f"{path}: next page points at another resource")
        return parts.query

    def invalid(self, message: str) -> ProviderCallError:
        return INVALID_INPUT.error(self.provider, "invalid_cursor", message)


def query_value(query: str, name: str) -> str | None:
    values = parse_qs(query).get(name)
    return values[0] if values else None

"""The MX adapter's transport and its reads: a member's status, accounts and transactions.

`MxAdapter` (in `adapter.py`) adds linking, institutions and webhooks on top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from services.providers.base import (
    AccountsPage,
    LinkCredentials,
    ProviderAdapter,
    TransactionsPage,
)
from services.providers.http import INVALID_INPUT, HttpReply, decode_json, send
from services.providers.mx.errors import connection_status_error, mx_error
from services.providers.mx.wire import (
    MAX_RECORDS_PER_PAGE,
    MEMBER_PATH,
    MX_ACCEPT,
    AccountsResponse,
    Cursor,
    MemberStatusResponse,
    TransactionsResponse,
    decode_cursor,
    encode_cursor,
    normalise_account,
    normalise_transaction,
)

T = TypeVar("T")


def member_path(user_guid: str, member_guid: str) -> str:
    return f"/users/{quote(user_guid, safe='')}/members/{quote(member_guid, safe='')}"


class MxReads(ProviderAdapter):
    """MX Platform API with HTTP Basic auth (client id : API key): transport and reads."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        client_id: str,
        api_key: str,
        name: str = "mx",
        max_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._headers = {
            "Accept": MX_ACCEPT,
            "Authorization": aiohttp.encode_basic_auth(client_id, api_key),
        }
        self._api_key = api_key
        self._max_timeout_s = max_timeout_s

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        await self._check_member(link, timeout_s)
        accounts: list[dict[str, Any]] = []
        page, total_pages = 1, 1
        while page <= total_pages:
            parsed = await self._member_get(
                link, "/accounts", AccountsResponse, timeout_s, page=page, per_page=100
            )
            accounts.extend(normalise_account(a) for a in parsed.accounts)
            page, total_pages = page + 1, parsed.pagination.total_pages
        return AccountsPage(accounts=accounts)

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        try:
            position = decode_cursor(cursor)
        except ValueError:
            raise INVALID_INPUT.error(
                self.name, "invalid_cursor", "cursor is not an MX page cursor"
            ) from None
        # A broken login only shows in the member's status; once per sync run
        # is enough to catch it without doubling every page's calls.
        if position.starts_run:
            await self._check_member(link, timeout_s)
        per_page = max(1, min(count, MAX_RECORDS_PER_PAGE))
        page = position.page(per_page)
        parsed = await self._member_get(
            link, "/transactions", TransactionsResponse, timeout_s, page=page, per_page=per_page
        )
        has_more = page < parsed.pagination.total_pages
        # MX has no change feed: the next run starts over at this last page, so
        # records appended to it are picked up (ids make the re-read harmless).
        next_offset = page * per_page if has_more else (page - 1) * per_page
        return TransactionsPage(
            added=[normalise_transaction(t) for t in parsed.transactions],
            modified=[],
            removed=[],
            next_cursor=encode_cursor(Cursor(next_offset, starts_run=not has_more)),
            has_more=has_more,
        )

    async def _check_member(self, link: LinkCredentials, timeout_s: float) -> None:
        parsed = await self._member_get(link, "/status", MemberStatusResponse, timeout_s)
        error = connection_status_error(parsed.member.connection_status, provider=self.name)
        if error is not None:
            raise error

    async def _member_get(
        self,
        link: LinkCredentials,
        suffix: str,
        type_: type[T],
        timeout_s: float,
        *,
        page: int | None = None,
        per_page: int | None = None,
    ) -> T:
        params = None
        if page is not None and per_page is not None:
            params = {"page": str(page), "records_per_page": str(per_page)}
        return await self._call(
            "GET",
            member_path(link.access_token, link.item_id) + suffix,
            MEMBER_PATH + suffix,
            type_,
            timeout_s,
            params=params,
            secrets=(link.access_token,),
        )

    async def _call(
        self,
        method: str,
        path: str,
        template: str,
        type_: type[T],
        timeout_s: float,
        **kwargs: Any,
    ) -> T:
        reply = await self._send(method, path, template, timeout_s, **kwargs)
        return decode_json(reply, type_, provider=self.name, endpoint=template)

    async def _send(
        self,
        method: str,
        path: str,
        template: str,
        timeout_s: float,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> HttpReply:
        """One call; `template` (never the path, which holds the user guid) names it."""
        reply = await send(
            self._session,
            method,
            self._base_url + path,
            provider=self.name,
            endpoint=template,
            timeout_s=min(timeout_s, self._max_timeout_s),
            json_body=json_body,
            params=params,
            headers={**self._headers, **(headers or {})},
        )
        if not reply.ok:
            raise mx_error(
                reply.status,
                reply.body,
                provider=self.name,
                retry_after_s=reply.retry_after_s,
                secrets=(*secrets, self._api_key),
                endpoint=template,
            )
        return reply

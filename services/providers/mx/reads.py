"""The MX adapter's transport and its reads: a member's status, accounts and transactions.

`MxAdapter` (in `adapter.py`) adds linking, institutions and webhooks on top.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
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
    MAX_TRANSACTIONS_PER_PAGE,
    MEMBER_PATH,
    MIN_TRANSACTIONS_PER_PAGE,
    MX_ACCEPT,
    AccountsResponse,
    MemberStatusResponse,
    MxTransaction,
    TransactionsResponse,
    decode_cursor,
    encode_cursor,
    instant,
    normalise_account,
    normalise_transaction,
)

T = TypeVar("T")


def member_path(user_guid: str, member_guid: str) -> str:
    return f"/users/{quote(user_guid, safe='')}/members/{quote(member_guid, safe='')}"


def _existed_at(t: MxTransaction, mark: str) -> bool:
    """Whether MX had `t` when the mark was taken (so its change is a modification)."""
    created, since = instant(t.created_at), instant(mark)
    return created is not None and since is not None and created <= since


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
            params = {"page": str(page), "records_per_page": "100"}
            parsed = await self._member_get(
                link, "/accounts", AccountsResponse, timeout_s, params=params
            )
            accounts.extend(normalise_account(a) for a in parsed.accounts)
            page, total_pages = page + 1, parsed.pagination.total_pages
        return AccountsPage(accounts=accounts)

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        """One page of what changed since the cursor's mark (see `wire.py`).

        A record that existed at the last run's mark is `modified`, one made
        since is `added`, one MX marks deleted is `removed`.
        """
        try:
            position = decode_cursor(cursor)
        except ValueError:
            raise INVALID_INPUT.error(
                self.name, "invalid_cursor", "cursor is not an MX change cursor"
            ) from None
        # A broken login only shows in the member's status; once per sync run
        # is enough to catch it without doubling every page's calls.
        if position.starts_run:
            await self._check_member(link, timeout_s)
        per_page = max(MIN_TRANSACTIONS_PER_PAGE, min(count, MAX_TRANSACTIONS_PER_PAGE))
        params = {"page": str(position.page), "records_per_page": str(per_page)}
        since = instant(position.mark)
        if since is not None:
            params["from_updated_at"] = since.astimezone(UTC).date().isoformat()
        parsed = await self._member_get(
            link, "/transactions", TransactionsResponse, timeout_s, params=params
        )
        added: list[dict[str, Any]] = []
        modified: list[dict[str, Any]] = []
        removed: list[str] = []
        after = position
        for t in parsed.transactions:
            after = after.seen(t)
            if position.delivered(t):
                continue
            if t.is_deleted:
                removed.append(t.guid)
            elif _existed_at(t, position.mark):
                modified.append(normalise_transaction(t))
            else:
                added.append(normalise_transaction(t))
        has_more = position.page < parsed.pagination.total_pages
        after = after.next_page() if has_more else after.next_run()
        return TransactionsPage(
            added=added,
            modified=modified,
            removed=removed,
            next_cursor=encode_cursor(after),
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
        params: Mapping[str, str] | None = None,
    ) -> T:
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

"""Plaid: `/accounts/get` and `/transactions/sync` behind the provider port."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from services.providers.base import (
    AccountsPage,
    LinkCredentials,
    ProviderAdapter,
    TransactionsPage,
)
from services.providers.http import HttpReply, decode_json, send
from services.providers.plaid_errors import plaid_error


class _Balances(msgspec.Struct, frozen=True):
    current: float | None = None
    available: float | None = None
    iso_currency_code: str | None = None


class _Account(msgspec.Struct, frozen=True):
    account_id: str
    name: str
    type: str
    balances: _Balances
    subtype: str | None = None
    mask: str | None = None


class _AccountsResponse(msgspec.Struct, frozen=True):
    accounts: list[_Account]


class _Transaction(msgspec.Struct, frozen=True):
    transaction_id: str
    account_id: str
    amount: float
    date: str
    name: str | None = None
    merchant_name: str | None = None
    pending: bool = False
    iso_currency_code: str | None = None


class _RemovedTransaction(msgspec.Struct, frozen=True):
    transaction_id: str


class _SyncResponse(msgspec.Struct, frozen=True):
    added: list[_Transaction]
    modified: list[_Transaction]
    removed: list[_RemovedTransaction]
    next_cursor: str
    has_more: bool


def _transaction(t: _Transaction) -> dict[str, Any]:
    return {
        "transaction_id": t.transaction_id,
        "account_id": t.account_id,
        "amount": t.amount,
        "date": t.date,
        "name": t.name or t.merchant_name or "",
        "pending": t.pending,
        "iso_currency_code": t.iso_currency_code,
    }


class PlaidAdapter(ProviderAdapter):
    """Plaid's API. `LinkCredentials.access_token` is the Item's access token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        client_id: str,
        secret: str,
        name: str = "plaid",
        max_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._secret = secret
        self._max_timeout_s = max_timeout_s

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        reply = await self._post("/accounts/get", link, {}, timeout_s)
        parsed = decode_json(reply, _AccountsResponse, provider=self.name, endpoint="/accounts/get")
        accounts = [
            {
                "account_id": a.account_id,
                "name": a.name,
                "type": a.type,
                "subtype": a.subtype,
                "mask": a.mask,
                "balances": msgspec.structs.asdict(a.balances),
            }
            for a in parsed.accounts
        ]
        return AccountsPage(accounts=accounts)

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        # Plaid takes 1..500; an empty cursor asks for the whole history.
        body = {"cursor": cursor or "", "count": max(1, min(count, 500))}
        reply = await self._post("/transactions/sync", link, body, timeout_s)
        parsed = decode_json(
            reply, _SyncResponse, provider=self.name, endpoint="/transactions/sync"
        )
        return TransactionsPage(
            added=[_transaction(t) for t in parsed.added],
            modified=[_transaction(t) for t in parsed.modified],
            removed=[r.transaction_id for r in parsed.removed],
            next_cursor=parsed.next_cursor,
            has_more=parsed.has_more,
        )

    async def _post(
        self, endpoint: str, link: LinkCredentials, extra: dict[str, Any], timeout_s: float
    ) -> HttpReply:
        body = {
            "client_id": self._client_id,
            "secret": self._secret,
            "access_token": link.access_token,
            **extra,
        }
        reply = await send(
            self._session,
            "POST",
            self._base_url + endpoint,
            provider=self.name,
            endpoint=endpoint,
            timeout_s=min(timeout_s, self._max_timeout_s),
            json_body=body,
        )
        if not reply.ok:
            raise plaid_error(
                reply.status,
                reply.body,
                provider=self.name,
                retry_after_s=reply.retry_after_s,
                secrets=(link.access_token, self._secret, self._client_id),
                endpoint=endpoint,
            )
        return reply

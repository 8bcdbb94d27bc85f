"""Plaid behind the provider port: link, exchange, accounts, transactions, webhooks.

Every Plaid call is a JSON POST authenticated by `client_id` and `secret` in
the body. `LinkCredentials.access_token` is the Item's access token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import msgspec

from services.providers.base import (
    AccountsPage,
    HealthStatus,
    Institution,
    LinkCredentials,
    LinkRequest,
    LinkToken,
    ProviderAdapter,
    ProviderCallError,
    TransactionsPage,
    WebhookEvent,
    WebhookRejectedError,
)
from services.providers.http import decode_json, send
from services.providers.plaid.errors import plaid_error
from services.providers.plaid.status import StatusReading, StatusResponse, reading
from services.providers.plaid.webhooks import PlaidWebhookVerifier, event_id, normalise
from services.providers.plaid.wire import (
    NOT_READY,
    AccountsResponse,
    ExchangeResponse,
    InstitutionResponse,
    InstitutionsResponse,
    Jwk,
    LinkTokenResponse,
    RemoveResponse,
    SyncResponse,
    VerificationKeyResponse,
    account,
    institution,
    transaction,
)

T = TypeVar("T")


class PlaidAdapter(ProviderAdapter):
    """Plaid's API at `base_url` (sandbox, production, or our local sandbox)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        client_id: str,
        secret: str,
        name: str = "plaid",
        max_timeout_s: float = 10.0,
        client_name: str = "syncyard",
    ) -> None:
        self.name = name
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._secret = secret
        self._max_timeout_s = max_timeout_s
        self._client_name = client_name
        self._webhooks = PlaidWebhookVerifier(self._fetch_key)

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        body = {"access_token": link.access_token}
        parsed = await self._call("/accounts/get", body, AccountsResponse, timeout_s)
        return AccountsPage(accounts=[account(a) for a in parsed.accounts])

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        # Plaid takes 1..500; an empty cursor asks for the whole history.
        body: dict[str, Any] = {"access_token": link.access_token, "cursor": cursor or ""}
        body["count"] = max(1, min(count, 500))
        parsed = await self._call("/transactions/sync", body, SyncResponse, timeout_s)
        if parsed.transactions_update_status == NOT_READY:
            # A new Item whose first pull has not landed: no transactions and an empty
            # cursor. Not an error, and not "caught up": come back, from where we were.
            return TransactionsPage(
                added=[], modified=[], removed=[], next_cursor=cursor or "", has_more=True
            )
        return TransactionsPage(
            added=[transaction(t) for t in parsed.added],
            modified=[transaction(t) for t in parsed.modified],
            removed=[r.transaction_id for r in parsed.removed],
            next_cursor=parsed.next_cursor,
            has_more=parsed.has_more,
        )

    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        """Plaid has no status API: one authenticated `/institutions/get` of a single row.

        It proves the API answers and our keys work, without any person's data.
        """
        started = time.monotonic()
        body = {"count": 1, "offset": 0, "country_codes": ["US"]}
        try:
            await self._call("/institutions/get", body, InstitutionsResponse, timeout_s)
        except ProviderCallError as exc:
            latency = (time.monotonic() - started) * 1000.0
            detail = f"{exc.error.type}/{exc.error.code}"
            return HealthStatus(healthy=False, latency_ms=latency, detail=detail)
        latency = (time.monotonic() - started) * 1000.0
        return HealthStatus(healthy=True, latency_ms=latency, detail="/institutions/get answered")

    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        """`/link/token/create`; with `update_link`, update mode (the Item's access token)."""
        body: dict[str, Any] = {
            "client_name": self._client_name,
            "language": request.language,
            "country_codes": list(request.country_codes),
            "user": {"client_user_id": request.user_ref},
        }
        if request.update_link is not None:
            # Update mode: Plaid takes the Item's products from the Item itself.
            body["access_token"] = request.update_link.access_token
        else:
            body["products"] = list(request.products)
        if request.webhook_url:
            body["webhook"] = request.webhook_url
        if request.redirect_uri:
            body["redirect_uri"] = request.redirect_uri
        parsed = await self._call("/link/token/create", body, LinkTokenResponse, timeout_s)
        return LinkToken(
            token=parsed.link_token, expires_at=parsed.expiration, request_id=parsed.request_id
        )

    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        body = {"public_token": public_token}
        parsed = await self._call(
            "/item/public_token/exchange", body, ExchangeResponse, timeout_s, public_token
        )
        return LinkCredentials(
            provider=self.name, item_id=parsed.item_id, access_token=parsed.access_token
        )

    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        """`/item/remove`; an Item Plaid no longer knows counts as removed."""
        try:
            await self._call(
                "/item/remove", {"access_token": link.access_token}, RemoveResponse, timeout_s
            )
        except ProviderCallError as exc:
            if exc.error.code != "ITEM_NOT_FOUND":
                raise

    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        body = {"institution_id": institution_id, "country_codes": ["US"]}
        parsed = await self._call("/institutions/get_by_id", body, InstitutionResponse, timeout_s)
        return institution(parsed.institution)

    async def institution_status(self, institution_id: str, *, timeout_s: float) -> StatusReading:
        """Plaid's own report of how logins and transaction updates fare at the bank."""
        body = {
            "institution_id": institution_id,
            "country_codes": ["US"],
            "options": {"include_status": True},
        }
        parsed = await self._call("/institutions/get_by_id", body, StatusResponse, timeout_s)
        return reading(parsed)

    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        body = {"query": query, "country_codes": list(country_codes), "products": None}
        parsed = await self._call("/institutions/search", body, InstitutionsResponse, timeout_s)
        return [institution(i) for i in parsed.institutions[: max(limit, 0)]]

    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        """Verify the `Plaid-Verification` JWT, then normalise the body.

        A failure to fetch Plaid's key raises ProviderCallError (answer 5xx so
        Plaid retries); a key id Plaid does not know rejects the webhook.
        """
        iat = await self._webhooks.verify(headers, body, now=now, timeout_s=timeout_s)
        return msgspec.structs.replace(
            normalise(self.name, body),
            event_id=event_id(headers),
            issued_at=datetime.fromtimestamp(iat, UTC),
        )

    async def _fetch_key(self, kid: str, timeout_s: float) -> Jwk:
        endpoint = "/webhook_verification_key/get"
        try:
            parsed = await self._call(endpoint, {"key_id": kid}, VerificationKeyResponse, timeout_s)
        except ProviderCallError as exc:
            if exc.error.type == "validation":
                raise WebhookRejectedError("plaid webhook: Plaid knows no such key id") from None
            raise
        return parsed.key

    async def _call(
        self,
        endpoint: str,
        extra: dict[str, Any],
        type_: type[T],
        timeout_s: float,
        *secrets: str,
    ) -> T:
        body = {"client_id": self._client_id, "secret": self._secret, **extra}
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
            token = extra.get("access_token")
            known = (*secrets, self._secret, self._client_id)
            raise plaid_error(
                reply.status,
                reply.body,
                provider=self.name,
                retry_after_s=reply.retry_after_s,
                secrets=(*known, token) if isinstance(token, str) else known,
                endpoint=endpoint,
            )
        return decode_json(reply, type_, provider=self.name, endpoint=endpoint)

"""Finicity (Mastercard Open Finance US) behind the provider port.

A link at Finicity is one institution login of one customer:
`LinkCredentials.item_id` is `"<customerId>:<institutionLoginId>"` and
`access_token` is the customer id (Finicity authenticates us, not the
person, so the customer id is what must stay out of logs). The public token
the link flow exchanges is what the Connect `added` webhook carries
(`"<customerId>:<institutionLoginId>"`) or just the customer id, in which
case the login most recently added is taken.

Configured through `ProviderSettings`: `client_id` is the Partner ID and
`secret` is `"<Finicity-App-Key>:<Partner Secret>"` (Finicity needs three
values and a Partner Secret may not contain `:`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp

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
)
from services.providers.finicity.client import FinicityClient
from services.providers.finicity.link import connect_url, ensure_customer, find_customer
from services.providers.finicity.reads import (
    customer_accounts,
    link_accounts,
    of_login,
    split_link,
    transactions_page,
)
from services.providers.finicity.webhooks import verify_finicity_webhook
from services.providers.finicity.wire import (
    InstitutionResponse,
    InstitutionsResponse,
    decode_cursor,
    normalise_account,
    normalise_institution,
)
from services.providers.http import INVALID_INPUT

if TYPE_CHECKING:
    from services.providers.settings import ProviderSettings

LOGIN = "/aggregation/v1/customers/{customerId}/institutionLogins/{institutionLoginId}"
INSTITUTIONS = "/institution/v2/institutions"


class FinicityAdapter(ProviderAdapter):
    """Finicity's API; `clock` (epoch seconds) sets transaction windows and webhook age."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        partner_id: str,
        partner_secret: str,
        app_key: str,
        name: str = "finicity",
        max_timeout_s: float = 10.0,
        customer_kind: str = "active",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._client = FinicityClient(
            session,
            base_url=base_url,
            partner_id=partner_id,
            partner_secret=partner_secret,
            app_key=app_key,
            provider=name,
            max_timeout_s=max_timeout_s,
        )
        self._partner_secret = partner_secret
        self._customer_kind = customer_kind
        self._clock = clock

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        accounts = await link_accounts(self._client, link, timeout_s=timeout_s)
        return AccountsPage(accounts=[normalise_account(a) for a in accounts])

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        now = int(self._clock())
        try:
            position = decode_cursor(cursor, now=now)
        except ValueError:
            raise INVALID_INPUT.error(
                self.name, "invalid_cursor", "cursor is not a Finicity cursor"
            ) from None
        return await transactions_page(
            self._client, link, position, count=count, now=now, timeout_s=timeout_s
        )

    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        """No status API: one authenticated, unbilled institution search of one row."""
        started = time.monotonic()
        try:
            await self._client.get_json(
                INSTITUTIONS,
                InstitutionsResponse,
                endpoint=INSTITUTIONS,
                timeout_s=timeout_s,
                params={"start": "1", "limit": "1"},
            )
        except ProviderCallError as exc:
            latency = (time.monotonic() - started) * 1000.0
            detail = f"{exc.error.type}/{exc.error.code}"
            return HealthStatus(healthy=False, latency_ms=latency, detail=detail)
        latency = (time.monotonic() - started) * 1000.0
        return HealthStatus(healthy=True, latency_ms=latency, detail=f"{INSTITUTIONS} answered")

    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        """A Data Connect URL; with `update_link`, Data Connect Fix for that login."""
        login_id: str | None = None
        if request.update_link is not None:
            customer_id, login_id = split_link(request.update_link)
        else:
            customer_id = await ensure_customer(
                self._client, request.user_ref, kind=self._customer_kind, timeout_s=timeout_s
            )
        return await connect_url(
            self._client,
            request,
            customer_id=customer_id,
            institution_login_id=login_id,
            timeout_s=timeout_s,
        )

    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        customer_id, _, login_id = public_token.partition(":")
        accounts = await customer_accounts(self._client, customer_id, timeout_s=timeout_s)
        if not login_id:
            newest = max(accounts, key=lambda a: a.created_date or 0, default=None)
            login_id = str(newest.institution_login_id) if newest else ""
        link = LinkCredentials(
            provider=self.name, item_id=f"{customer_id}:{login_id}", access_token=customer_id
        )
        of_login(accounts, link, self.name)
        return link

    async def belongs_to(
        self, public_token: str, *, user_ref: str, timeout_s: float
    ) -> bool | None:
        """Whether the token's customer is the one added for `user_ref`.

        The login is then checked at exchange to be among that customer's accounts.
        """
        customer_id = public_token.partition(":")[0]
        if not customer_id:
            return False
        return customer_id == await find_customer(self._client, user_ref, timeout_s=timeout_s)

    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        """Delete access to the login's accounts; a login Finicity no longer knows is gone."""
        customer_id, login_id = split_link(link)
        path = f"/aggregation/v1/customers/{quote(customer_id, safe='')}/institutionLogins/"
        try:
            await self._client.call(
                "DELETE",
                path + quote(login_id, safe=""),
                endpoint=LOGIN,
                timeout_s=timeout_s,
                secrets=(customer_id,),
            )
        except ProviderCallError as exc:
            if exc.http_status != 404:
                raise

    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        parsed = await self._client.get_json(
            f"{INSTITUTIONS}/{quote(institution_id, safe='')}",
            InstitutionResponse,
            endpoint=INSTITUTIONS + "/{institutionId}",
            timeout_s=timeout_s,
        )
        return normalise_institution(parsed.institution)

    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        params = {"search": query or "*", "start": "1", "limit": str(max(1, min(limit, 1000)))}
        parsed = await self._client.get_json(
            INSTITUTIONS,
            InstitutionsResponse,
            endpoint=INSTITUTIONS,
            timeout_s=timeout_s,
            params=params,
        )
        found = [normalise_institution(i) for i in parsed.institutions]
        wanted = {c.upper() for c in country_codes}
        return [i for i in found if not wanted or wanted & set(i.country_codes)][: max(limit, 0)]

    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        return verify_finicity_webhook(
            headers, body, partner_secret=self._partner_secret, now=now, provider=self.name
        )


def build_finicity(session: aiohttp.ClientSession, settings: ProviderSettings) -> ProviderAdapter:
    """The registry's factory: `secret` holds `"<app key>:<partner secret>"`."""
    app_key, sep, partner_secret = settings.secret.partition(":")
    if not sep or not app_key or not partner_secret:
        raise ValueError(f"provider {settings.name!r}: secret must be '<app key>:<partner secret>'")
    return FinicityAdapter(
        session,
        base_url=settings.base_url,
        partner_id=settings.client_id,
        partner_secret=partner_secret,
        app_key=app_key,
        name=settings.name,
        max_timeout_s=settings.timeout_s,
    )

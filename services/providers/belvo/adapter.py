"""Belvo behind the provider port.

A link at Belvo is a Belvo link: `LinkCredentials.item_id` and `access_token`
are both the link id (Belvo authenticates us with HTTP Basic, secret id :
secret password, so the link id is what must stay out of logs). The link flow
opens Belvo's hosted widget with a short-lived access token from
`POST /api/token/`; the widget hands the new link id to the app, and that id
is the public token `exchange_token` checks (and `belongs_to`, by the
link's `external_id`, that it is the person's). `register_link` creates a link
from credentials directly (`POST /api/links/`), as Belvo's API allows.

Configured through `ProviderSettings`: `client_id` is the secret id, `secret`
the secret password, and `webhook_secret` the Authorization value set for
webhooks in Belvo's dashboard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
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
from services.providers.belvo.client import BelvoClient
from services.providers.belvo.link import WIDGET_URL, register, widget_link
from services.providers.belvo.reads import (
    LINK_PATH,
    checked_link,
    link_accounts,
    transactions_page,
)
from services.providers.belvo.webhooks import verify_belvo_webhook
from services.providers.belvo.wire import (
    BelvoInstitution,
    InstitutionsList,
    decode_cursor,
    normalise_institution,
)

if TYPE_CHECKING:
    from services.providers.settings import ProviderSettings

INSTITUTIONS = "/api/institutions/"


class BelvoAdapter(ProviderAdapter):
    """Belvo's API. `refresh_on_sync` makes each sync run fetch fresh data from the bank."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        secret_id: str,
        secret_password: str,
        name: str = "belvo",
        max_timeout_s: float = 10.0,
        webhook_authorization: str | None = None,
        widget_url: str = WIDGET_URL,
        refresh_on_sync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._client = BelvoClient(
            session,
            base_url=base_url,
            secret_id=secret_id,
            secret_password=secret_password,
            provider=name,
            max_timeout_s=max_timeout_s,
        )
        self._webhook_authorization = webhook_authorization
        self._widget_url = widget_url
        self._refresh_on_sync = refresh_on_sync
        self._clock = clock

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        accounts = await link_accounts(self._client, link.item_id, timeout_s=timeout_s)
        return AccountsPage(accounts=accounts)

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        try:
            position = decode_cursor(cursor)
        except ValueError:
            raise self._client.invalid("cursor is not a Belvo cursor") from None
        today = datetime.fromtimestamp(self._clock(), UTC).date()
        return await transactions_page(
            self._client,
            link.item_id,
            position,
            count=count,
            today=today,
            refresh=self._refresh_on_sync,
            timeout_s=timeout_s,
        )

    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        """No status API: one authenticated institutions page of one row."""
        started = time.monotonic()
        try:
            await self._client.get_json(
                INSTITUTIONS,
                InstitutionsList,
                endpoint=INSTITUTIONS,
                timeout_s=timeout_s,
                params={"page_size": "1"},
            )
        except ProviderCallError as exc:
            latency = (time.monotonic() - started) * 1000.0
            return HealthStatus(
                healthy=False, latency_ms=latency, detail=f"{exc.error.type}/{exc.error.code}"
            )
        latency = (time.monotonic() - started) * 1000.0
        return HealthStatus(healthy=True, latency_ms=latency, detail=f"{INSTITUTIONS} answered")

    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        """A widget access token and the hosted widget's URL; `update_link` re-authenticates."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        return await widget_link(
            self._client, request, widget_url=self._widget_url, now=now, timeout_s=timeout_s
        )

    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        """The widget's link id, checked to be a link Belvo can read."""
        link = await checked_link(self._client, public_token, timeout_s=timeout_s)
        return LinkCredentials(provider=self.name, item_id=link.id, access_token=link.id)

    async def belongs_to(
        self, public_token: str, *, user_ref: str, timeout_s: float
    ) -> bool | None:
        """Whether the link's `external_id` is `user_ref`, as the widget opened for the
        person set it (`link.widget_link`); a link without one is nobody's we know."""
        link = await checked_link(self._client, public_token, timeout_s=timeout_s)
        return link.external_id == user_ref

    async def register_link(
        self,
        institution: str,
        username: str,
        password: str,
        *,
        user_ref: str | None = None,
        timeout_s: float,
    ) -> LinkCredentials:
        """`POST /api/links/`: a recurrent link from the person's bank credentials."""
        link_id = await register(
            self._client, institution, username, password, external_id=user_ref, timeout_s=timeout_s
        )
        return LinkCredentials(provider=self.name, item_id=link_id, access_token=link_id)

    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        """`DELETE /api/links/{id}/`; a link Belvo no longer knows is already gone."""
        try:
            await self._client.call(
                "DELETE",
                f"/api/links/{quote(link.item_id, safe='')}/",
                endpoint=LINK_PATH,
                timeout_s=timeout_s,
                secrets=(link.item_id,),
            )
        except ProviderCallError as exc:
            if exc.http_status != 404:
                raise

    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        """By Belvo's numeric id, or by the name links use (`erebor_mx_retail`)."""
        if institution_id.isdigit():
            found = await self._client.get_json(
                f"{INSTITUTIONS}{institution_id}/",
                BelvoInstitution,
                endpoint=INSTITUTIONS + "{id}/",
                timeout_s=timeout_s,
            )
            return normalise_institution(found)
        page = await self._institutions({"name": institution_id}, timeout_s)
        if not page:
            raise self._client.invalid(f"{INSTITUTIONS}: no institution named {institution_id!r}")
        return page[0]

    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        params = {"page_size": str(max(1, min(limit, 1000))), "display_name__icontains": query}
        if country_codes:
            params["country_code__in"] = ",".join(country_codes)
        return (await self._institutions(params, timeout_s))[: max(limit, 0)]

    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        return verify_belvo_webhook(
            headers, body, expected=self._webhook_authorization, provider=self.name
        )

    async def _institutions(self, params: dict[str, str], timeout_s: float) -> list[Institution]:
        page = await self._client.get_json(
            INSTITUTIONS,
            InstitutionsList,
            endpoint=INSTITUTIONS,
            timeout_s=timeout_s,
            params=params,
        )
        return [normalise_institution(i) for i in page.results]


def build_belvo(session: aiohttp.ClientSession, settings: ProviderSettings) -> ProviderAdapter:
    """The registry's factory."""
    return BelvoAdapter(
        session,
        base_url=settings.base_url,
        secret_id=settings.client_id,
        secret_password=settings.secret,
        name=settings.name,
        max_timeout_s=settings.timeout_s,
        webhook_authorization=settings.webhook_secret,
    )

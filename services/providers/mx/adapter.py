"""MX Platform API behind the provider port: Connect widget, members, institutions, webhooks.

A link at MX is a member of a user: `LinkCredentials.item_id` is the member
guid and `access_token` the user guid (MX authenticates us, not the user,
so the user guid is what must stay out of logs). Reads live in `reads.py`;
`links.py` says what our "public token" is at MX, `webhooks.py` how
webhooks are trusted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from services.providers.base import (
    HealthStatus,
    Institution,
    LinkCredentials,
    LinkRequest,
    LinkToken,
    ProviderCallError,
    WebhookEvent,
)
from services.providers.http import INVALID_INPUT
from services.providers.mx.links import (
    CONNECT_WIDGET,
    InstitutionResponse,
    InstitutionsResponse,
    MemberResponse,
    UserResponse,
    UsersResponse,
    WidgetUrlResponse,
    institution,
    parse_public_token,
)
from services.providers.mx.reads import MxReads, member_path
from services.providers.mx.webhooks import BasicCredentials, normalise, verify_basic
from services.providers.mx.wire import MAX_INSTITUTIONS_PER_PAGE, MIN_RECORDS_PER_PAGE

_USER = "/users/{user_guid}"
_MEMBER = _USER + "/members/{member_guid}"


class MxAdapter(MxReads):
    """MX Platform API with HTTP Basic auth (client id : API key).

    `webhook_credentials` are the Basic username and password MX was given for
    webhooks (in its client dashboard); without them every webhook is refused.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        client_id: str,
        api_key: str,
        name: str = "mx",
        max_timeout_s: float = 10.0,
        webhook_credentials: BasicCredentials | None = None,
    ) -> None:
        super().__init__(
            session,
            base_url=base_url,
            client_id=client_id,
            api_key=api_key,
            name=name,
            max_timeout_s=max_timeout_s,
        )
        self._webhook_credentials = webhook_credentials

    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        """MX has no status API: one authenticated page of one institution.

        It proves the API answers and our keys work, without any person's data.
        """
        started = time.monotonic()
        # MX's smallest page: records_per_page runs from 10 (its spec).
        params = {"page": "1", "records_per_page": str(MIN_RECORDS_PER_PAGE)}
        try:
            await self._send("GET", "/institutions", "/institutions", timeout_s, params=params)
        except ProviderCallError as exc:
            latency = (time.monotonic() - started) * 1000.0
            detail = f"{exc.error.type}/{exc.error.code}"
            return HealthStatus(healthy=False, latency_ms=latency, detail=detail)
        latency = (time.monotonic() - started) * 1000.0
        return HealthStatus(healthy=True, latency_ms=latency, detail="/institutions answered")

    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        """A Connect widget URL for the person's MX user (created on first link).

        In update mode the widget opens on the existing member to fix its login.
        MX widget URLs are single-use and short-lived; MX returns no expiry.
        """
        widget: dict[str, Any] = {
            "widget_type": CONNECT_WIDGET,
            "mode": "aggregation",
            "include_transactions": True,
            "ui_message_version": 4,
        }
        if request.update_link is not None:
            user_guid = request.update_link.access_token
            widget["current_member_guid"] = request.update_link.item_id
            widget["update_credentials"] = True
        else:
            user_guid = await self._ensure_user(request.user_ref, timeout_s)
        if request.institution_id:
            widget["current_institution_code"] = request.institution_id
        if request.redirect_uri:
            widget["client_redirect_url"] = request.redirect_uri
        country = request.country_codes[0] if request.country_codes else "US"
        parsed = await self._call(
            "POST",
            f"/users/{quote(user_guid, safe='')}/widget_urls",
            _USER + "/widget_urls",
            WidgetUrlResponse,
            timeout_s,
            json_body={"widget_url": widget},
            headers={"Accept-Language": f"{request.language}-{country}"},
            secrets=(user_guid,),
        )
        return LinkToken(token=parsed.widget_url.url, url=parsed.widget_url.url)

    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        """Check the member named by our MX public token (`USR-...:MBR-...`) exists."""
        pair = parse_public_token(public_token)
        if pair is None:
            raise INVALID_INPUT.error(
                self.name, "invalid_public_token", "not an MX public token (user_guid:member_guid)"
            )
        user_guid, member_guid = pair
        parsed = await self._call(
            "GET",
            member_path(user_guid, member_guid),
            _MEMBER,
            MemberResponse,
            timeout_s,
            secrets=(user_guid,),
        )
        return LinkCredentials(
            provider=self.name, item_id=parsed.member.guid, access_token=user_guid
        )

    async def belongs_to(
        self, public_token: str, *, user_ref: str, timeout_s: float
    ) -> bool | None:
        """Whether the token's user is the MX user whose partner id is `user_ref`.

        The member is read under that user at exchange, so the pair is the person's
        when the user is; a token that is not ours at all belongs to nobody.
        """
        pair = parse_public_token(public_token)
        if pair is None:
            return False
        return pair[0] == await self._user_guid(user_ref, timeout_s)

    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        """DELETE the member; one MX no longer knows counts as removed."""
        path = member_path(link.access_token, link.item_id)
        try:
            await self._send("DELETE", path, _MEMBER, timeout_s, secrets=(link.access_token,))
        except ProviderCallError as exc:
            if exc.http_status != 404:
                raise

    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        parsed = await self._call(
            "GET",
            f"/institutions/{quote(institution_id, safe='')}",
            "/institutions/{institution_code}",
            InstitutionResponse,
            timeout_s,
        )
        return institution(parsed.institution)

    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        """`GET /institutions?name=`, not filtered by country.

        MX's spec documents an `iso_country_code` array filter, but not how an
        array is written in the query; until that is known we filter nothing.
        """
        per_page = max(MIN_RECORDS_PER_PAGE, min(limit, MAX_INSTITUTIONS_PER_PAGE))
        params = {"name": query, "page": "1", "records_per_page": str(per_page)}
        parsed = await self._call(
            "GET", "/institutions", "/institutions", InstitutionsResponse, timeout_s, params=params
        )
        return [institution(i) for i in parsed.institutions[: max(limit, 0)]]

    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        """Check MX's HTTP Basic credentials, then normalise; MX sends no timestamp to check."""
        verify_basic(headers, self._webhook_credentials)
        return normalise(self.name, body)

    async def _user_guid(self, user_ref: str, timeout_s: float) -> str | None:
        """The guid of the MX user whose partner-defined id is `user_ref`, if there is one."""
        found = await self._call(
            "GET", "/users", "/users", UsersResponse, timeout_s, params={"id": user_ref}
        )
        # MX filters by `id`; a row naming another id (a filter ignored) is not the person.
        return next((u.guid for u in found.users if u.id in (None, user_ref)), None)

    async def _ensure_user(self, user_ref: str, timeout_s: float) -> str:
        """The guid of the MX user whose partner-defined id is `user_ref`, created if missing."""
        guid = await self._user_guid(user_ref, timeout_s)
        if guid is not None:
            return guid
        created = await self._call(
            "POST",
            "/users",
            "/users",
            UserResponse,
            timeout_s,
            json_body={"user": {"id": user_ref}},
        )
        return created.user.guid

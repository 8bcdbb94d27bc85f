"""Linking at Belvo: the hosted widget opened with a short-lived access token, or credentials.

`POST /api/token/` is authenticated by the secret keys in its body (not
Basic auth) and returns an access token the widget uses for ten minutes;
with `link_id` the widget re-authenticates that link instead of creating one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from services.providers.base import LinkRequest, LinkToken
from services.providers.belvo.client import BelvoClient
from services.providers.belvo.wire import Link, WidgetToken
from services.providers.http import decode_json

WIDGET_SESSION_PATH = "/api/token/"
LINKS_PATH = "/api/links/"
WIDGET_URL = "https://widget.belvo.io/"
WIDGET_TTL = timedelta(minutes=10)


async def widget_link(
    client: BelvoClient, request: LinkRequest, *, widget_url: str, now: datetime, timeout_s: float
) -> LinkToken:
    body: dict[str, object] = {
        "id": client.secret_id,
        "password": client.secret_password,
        "scopes": "read_institutions,write_links,read_links",
    }
    if request.update_link is not None:
        body["link_id"] = request.update_link.item_id
    reply = await client.call(
        "POST",
        WIDGET_SESSION_PATH,
        endpoint=WIDGET_SESSION_PATH,
        timeout_s=timeout_s,
        json_body=body,
        auth=False,
    )
    access = decode_json(
        reply, WidgetToken, provider=client.provider, endpoint=WIDGET_SESSION_PATH
    ).access
    query = {
        "access_token": access,
        "locale": request.language,
        "country_codes": ",".join(request.country_codes),
        "external_id": request.user_ref,
    }
    if request.institution_id:
        query["institutions"] = request.institution_id
    return LinkToken(
        token=access,
        url=f"{widget_url}?{urlencode(query)}",
        expires_at=(now + WIDGET_TTL).isoformat(),
    )


async def register(
    client: BelvoClient,
    institution: str,
    username: str,
    password: str,
    *,
    external_id: str | None = None,
    timeout_s: float,
) -> str:
    """A recurrent link from the person's bank credentials; answers its id.

    `external_id` is our `user_ref` for the person, as the widget sets it: the
    link flow accepts only a link whose `external_id` is the person's.
    """
    body = {
        "institution": institution,
        "username": username,
        "password": password,
        "access_mode": "recurrent",
    }
    if external_id is not None:
        body["external_id"] = external_id
    reply = await client.call(
        "POST",
        LINKS_PATH,
        endpoint=LINKS_PATH,
        timeout_s=timeout_s,
        json_body=body,
        secrets=(username, password),
    )
    return decode_json(reply, Link, provider=client.provider, endpoint=LINKS_PATH).id

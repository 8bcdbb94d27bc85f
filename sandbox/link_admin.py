"""`POST /_admin/links/{provider}/complete`: the person finishes the link flow.

The sandbox plays the person and the provider's UI: it issues what the real
provider would (Plaid: a public token; MX: a member) and POSTs the provider's
webhook, signed as that provider signs, to the webhook URL. It answers once
the webhook was delivered (or failed to be), so tests need not poll.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from sandbox.institutions import by_id, directory
from sandbox.links import LINKS
from sandbox.middleware import SEED
from sandbox.webhooks import (
    PLAID_SIGNING_KEY,
    WEBHOOK_SESSION,
    deliver,
    mx_headers,
    plaid_headers,
)


class CompleteLink(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which link finished, at which institution, and where the webhook goes.

    Plaid: `link_token` from /link/token/create (its webhook URL is the default).
    MX: `link_token` (the widget URL) or `user_guid`; `webhook_username` and
    `webhook_password` stand for the Basic credentials set in MX's dashboard.
    """

    link_token: str | None = None
    user_guid: str | None = None
    institution_id: str | None = None
    webhook_url: str | None = None
    webhook_username: str | None = None
    webhook_password: str | None = None


def _not_found(message: str) -> web.Response:
    return web.json_response({"error": message}, status=404)


async def complete_link(request: web.Request) -> web.Response:
    provider = request.match_info["provider"]
    try:
        req = msgspec.json.decode(await request.read(), type=CompleteLink)
    except msgspec.DecodeError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    if provider == "plaid":
        return await _complete_plaid(request, req)
    if provider == "mx":
        return await _complete_mx(request, req)
    return _not_found(f"no link flow for provider {provider!r}")


async def _send(
    request: web.Request, url: str | None, payload: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    if not url:
        return {"webhook_status": None, "webhook_error": "no webhook URL"}
    session = request.config_dict[WEBHOOK_SESSION]
    status, error = await deliver(session, url, _body(payload), headers)
    return {"webhook_status": status, "webhook_error": error}


def _body(payload: dict[str, Any]) -> bytes:
    return msgspec.json.encode(payload)


async def _complete_plaid(request: web.Request, req: CompleteLink) -> web.Response:
    links, seed = request.config_dict[LINKS], request.config_dict[SEED]
    session = links.plaid_sessions.get(req.link_token or "")
    if session is None:
        return _not_found("unknown link token")
    url = req.webhook_url or session.webhook
    payload: dict[str, Any]
    if session.access_token is not None:
        # Update mode: the Item is repaired in place; no new public token.
        item_id = links.plaid_item_id(session.access_token)
        payload = {
            "webhook_type": "ITEM",
            "webhook_code": "LOGIN_REPAIRED",
            "item_id": item_id,
            "environment": "sandbox",
        }
        public_token = None
    else:
        institution_id = req.institution_id or directory(seed)[0].plaid_id
        if by_id(seed, "plaid", institution_id) is None:
            return _not_found(f"no institution {institution_id!r}")
        public_token = links.issue_plaid_public_token(
            institution_id,
            session.user_ref,
            webhook=session.webhook,
            products=session.products or ("transactions",),
        )
        payload = {
            "webhook_type": "LINK",
            "webhook_code": "SESSION_FINISHED",
            "status": "SUCCESS",
            "link_session_id": links.uuid(),
            "link_token": req.link_token,
            "public_tokens": [public_token],
            "environment": "sandbox",
        }
    body = _body(payload)
    headers = plaid_headers(request.config_dict[PLAID_SIGNING_KEY], body)
    sent = await _send(request, url, payload, headers)
    return web.json_response({"public_token": public_token, **sent})


async def _complete_mx(request: web.Request, req: CompleteLink) -> web.Response:
    links, seed = request.config_dict[LINKS], request.config_dict[SEED]
    widget = links.mx_widgets.get((req.link_token or "").rstrip("/").rpartition("/")[2])
    user_guid = widget.user_guid if widget is not None else req.user_guid
    if not user_guid or user_guid not in links.mx_users.values():
        return _not_found("unknown widget URL or user guid")
    now = int(time.time())
    if widget is not None and widget.member_guid is not None:
        member_guid, action = widget.member_guid, "UPDATED"
        code = links.mx_institution(user_guid, member_guid).mx_code
    else:
        chosen = req.institution_id or (widget.institution_code if widget else None)
        code = chosen or directory(seed)[0].mx_code
        if by_id(seed, "mx", code) is None:
            return _not_found(f"no institution {code!r}")
        member_guid, action = links.mx_member(code), "CREATED"
    payload = {
        "type": "MEMBER",
        "action": action,
        "guid": member_guid,
        "user_guid": user_guid,
        "institution_code": code,
        "connection_status": "CONNECTED",
        "connection_status_id": 6,
        "is_being_aggregated": True,
        "aggregated_at": now,
        "created_at": now,
    }
    headers = mx_headers(req.webhook_username, req.webhook_password)
    sent = await _send(request, req.webhook_url, payload, headers)
    token = f"{user_guid}:{member_guid}"
    return web.json_response({"public_token": token, "member_guid": member_guid, **sent})


LINK_ADMIN_ROUTES = [web.post("/_admin/links/{provider}/complete", complete_link)]

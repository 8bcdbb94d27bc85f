"""A local Belvo: links, widget tokens, accounts, transactions (retrieve and list) and
institutions, behind HTTP Basic, with Belvo's paging (`next` URLs) and error bodies.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from datetime import date
from typing import Any

import msgspec
from aiohttp import web

from sandbox.belvo_api_data import (
    BAD_LOGIN_PASSWORD,
    STATE,
    BelvoLink,
    BelvoState,
    account_body,
    error_response,
    fault_code,
    institution_body,
    institution_name,
    institutions,
    link_bank,
    link_id,
    paged,
    transaction_rows,
)
from sandbox.faults import Fault
from sandbox.middleware import SEED, TRUTH, fault_middleware
from sandbox.truth import Bank


def _fault_response(request: web.Request, fault: Fault) -> web.Response | None:
    if fault.error_code is None and fault.status is None:
        return None
    return error_response(request, fault_code(fault.status, fault.error_code), fault.status)


def _authorised(request: web.Request) -> web.Response | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    try:
        secret_id, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        secret_id = password = ""
    if scheme != "Basic" or not secret_id or not password:
        return error_response(request, "authentication_failed")
    return None


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    refused = _authorised(request)
    if refused is not None:
        return refused
    try:
        return msgspec.json.decode(await request.read(), type=dict[str, Any])
    except msgspec.DecodeError:
        return error_response(request, "invalid")


def _bank(request: web.Request, link: BelvoLink) -> Bank:
    return link_bank(request.config_dict[TRUTH], link)


def _link(request: web.Request, link: str | None) -> BelvoLink | web.Response:
    found = request.config_dict[STATE].links.get(link or "")
    if found is None:
        return error_response(request, "does_not_exist")
    if found.status != "valid":
        return error_response(request, {"invalid": "invalid_link"}.get(found.status, "login_error"))
    return found


async def create_link(request: web.Request) -> web.Response:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    names = {institution_name(i) for i in institutions(request.config_dict[SEED])}
    if body.get("institution") not in names:
        return error_response(request, "does_not_exist")
    if not body.get("username") or not body.get("password"):
        return error_response(request, "required")
    if body["password"] == BAD_LOGIN_PASSWORD:
        return error_response(request, "login_error")
    link = BelvoLink(
        id=link_id(body["institution"], body["username"]),
        institution=body["institution"],
        username=body["username"],
        external_id=body.get("external_id") if isinstance(body.get("external_id"), str) else None,
    )
    request.config_dict[STATE].links[link.id] = link
    return web.json_response(_link_body(link, body.get("access_mode", "recurrent")), status=201)


def _link_body(link: BelvoLink, access_mode: str = "recurrent") -> dict[str, Any]:
    return {
        "id": link.id,
        "institution": link.institution,
        "status": link.status,
        "access_mode": access_mode,
        "created_at": "2025-01-31T06:00:00Z",
        "refresh_rate": "24h",
        "external_id": link.external_id,
    }


async def link_detail(request: web.Request) -> web.Response:
    refused = _authorised(request)
    link = request.config_dict[STATE].links.get(request.match_info["id"])
    if refused is not None or link is None:
        return refused or error_response(request, "not_found")
    return web.json_response(_link_body(link))


async def delete_link(request: web.Request) -> web.Response:
    refused = _authorised(request)
    link = request.config_dict[STATE].links.pop(request.match_info["id"], None)
    if refused is not None or link is None:
        return refused or error_response(request, "not_found")
    return web.Response(status=204)


async def widget_token(request: web.Request) -> web.Response:
    try:
        body = msgspec.json.decode(await request.read(), type=dict[str, Any])
    except msgspec.DecodeError:
        return error_response(request, "invalid")
    if not body.get("id") or not body.get("password"):
        return error_response(request, "authentication_failed")
    count = next(request.config_dict[STATE].request_ids)
    return web.json_response({"access": f"widget-{count:08x}", "refresh": f"refresh-{count:08x}"})


async def list_accounts(request: web.Request) -> web.Response:
    refused = _authorised(request)
    link = refused or _link(request, request.query.get("link"))
    if isinstance(link, web.Response):
        return link
    return paged(request, account_body(_bank(request, link), link.id))


async def retrieve_transactions(request: web.Request) -> web.Response:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    link = _link(request, body.get("link"))
    if isinstance(link, web.Response):
        return link
    try:
        start, end = date.fromisoformat(body["date_from"]), date.fromisoformat(body["date_to"])
    except (KeyError, TypeError, ValueError):
        return error_response(request, "invalid")
    if start > end:
        return error_response(request, "invalid")
    rows = transaction_rows(_bank(request, link), link.id)
    chosen = [r for r in rows if start.isoformat() <= r["value_date"] <= end.isoformat()]
    return web.json_response(chosen, status=201 if body.get("save_data", True) else 200)


async def list_transactions(request: web.Request) -> web.Response:
    refused = _authorised(request)
    link = refused or _link(request, request.query.get("link"))
    if isinstance(link, web.Response):
        return link
    rows = transaction_rows(_bank(request, link), link.id)
    after = request.query.get("created_at__gt")
    return paged(request, [r for r in rows if after is None or r["created_at"] > after])


async def list_institutions(request: web.Request) -> web.Response:
    refused = _authorised(request)
    if refused is not None:
        return refused
    q = request.query
    words = q.get("display_name__icontains", "").lower().split()
    countries = {c for c in q.get("country_code__in", "").upper().split(",") if c}
    rows = [
        institution_body(n, i)
        for n, i in enumerate(institutions(request.config_dict[SEED]))
        if all(w in i.name.lower() for w in words)
        and (not countries or i.country in countries)
        and q.get("name", institution_name(i)) == institution_name(i)
    ]
    return paged(request, rows)


async def institution_detail(request: web.Request) -> web.Response:
    refused = _authorised(request)
    for n, i in enumerate(institutions(request.config_dict[SEED])):
        if refused is None and str(100 + n) == request.match_info["id"]:
            return web.json_response(institution_body(n, i))
    return refused or error_response(request, "not_found")


def create_belvo_app(prefix: str = "/belvo") -> web.Application:
    """Belvo's routes, to be mounted under `prefix` on the sandbox app."""
    app = web.Application(middlewares=[fault_middleware("belvo", prefix, _fault_response)])
    app[STATE] = BelvoState(links={}, request_ids=itertools.count(1))
    app.router.add_post("/api/links/", create_link)
    app.router.add_get("/api/links/{id}/", link_detail)
    app.router.add_delete("/api/links/{id}/", delete_link)
    app.router.add_post("/api/token/", widget_token)
    app.router.add_get("/api/accounts/", list_accounts)
    app.router.add_post("/api/transactions/", retrieve_transactions)
    app.router.add_get("/api/transactions/", list_transactions)
    app.router.add_get("/api/institutions/", list_institutions)
    app.router.add_get("/api/institutions/{id}/", institution_detail)
    return app

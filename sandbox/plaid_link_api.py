"""A local Plaid's link, Item and institution endpoints, and its webhook verification key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from sandbox.faults import RequestContext
from sandbox.institutions import FakeInstitution, by_id, directory, search
from sandbox.links import LINKS, PlaidSession
from sandbox.middleware import FAULT_BOOK, SEED
from sandbox.plaid_api import error_response, request_id
from sandbox.plaid_status import institution_status
from sandbox.webhooks import PLAID_SIGNING_KEY

T = TypeVar("T")


class _Auth(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str = ""
    secret: str = ""


class _User(msgspec.Struct, frozen=True):
    client_user_id: str


class _LinkTokenCreate(_Auth, frozen=True, kw_only=True, forbid_unknown_fields=True):
    client_name: str
    language: str
    country_codes: list[str]
    user: _User
    products: list[str] | None = None
    access_token: str | None = None
    webhook: str | None = None
    redirect_uri: str | None = None


class _Token(_Auth, frozen=True, kw_only=True, forbid_unknown_fields=True):
    public_token: str = ""
    access_token: str = ""
    key_id: str = ""


class _Institutions(_Auth, frozen=True, kw_only=True, forbid_unknown_fields=True):
    country_codes: list[str]
    institution_id: str = ""
    query: str = ""
    products: list[str] | None = None
    count: int = 100
    offset: int = 0
    options: dict[str, Any] | None = None


async def _parse(request: web.Request, type_: type[T]) -> T | web.Response:
    try:
        parsed = msgspec.json.decode(await request.read(), type=type_)
    except msgspec.ValidationError as exc:
        code = "UNKNOWN_FIELDS" if "unknown field" in str(exc) else "INVALID_FIELD"
        return error_response(request, code, str(exc))
    except msgspec.DecodeError:
        return error_response(request, "INVALID_BODY", "body could not be parsed as JSON")
    if isinstance(parsed, _Auth) and (not parsed.client_id or not parsed.secret):
        return error_response(request, "MISSING_FIELDS", "client_id and secret are required")
    return parsed


def _institution(i: FakeInstitution) -> dict[str, Any]:
    return {
        "institution_id": i.plaid_id,
        "name": i.name,
        "country_codes": [i.country],
        "products": list(i.products),
        "url": i.url,
        "oauth": False,
        "routing_numbers": [],
        "status": None,
    }


async def link_token_create(request: web.Request) -> web.Response:
    req = await _parse(request, _LinkTokenCreate)
    if isinstance(req, web.Response):
        return req
    links = request.config_dict[LINKS]
    if req.access_token is None and not req.products:
        return error_response(request, "MISSING_FIELDS", "products is required")
    if req.access_token is not None and req.access_token not in links.plaid_institutions:
        return error_response(request, "INVALID_ACCESS_TOKEN", "access token not found")
    token = f"link-sandbox-{links.uuid()}"
    links.plaid_sessions[token] = PlaidSession(
        user_ref=req.user.client_user_id,
        webhook=req.webhook,
        access_token=req.access_token,
        products=tuple(req.products or ()),
    )
    expiration = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=4)
    return web.json_response(
        {
            "link_token": token,
            "expiration": expiration.isoformat().replace("+00:00", "Z"),
            "request_id": request_id(request),
        }
    )


async def public_token_exchange(request: web.Request) -> web.Response:
    req = await _parse(request, _Token)
    if isinstance(req, web.Response):
        return req
    links = request.config_dict[LINKS]
    # One use only, as at Plaid.
    access_token = links.plaid_public_tokens.pop(req.public_token, None)
    if access_token is None:
        return error_response(request, "INVALID_PUBLIC_TOKEN", "public token not found or used")
    item_id = links.plaid_item_id(access_token)
    return web.json_response(
        {"access_token": access_token, "item_id": item_id, "request_id": request_id(request)}
    )


async def item_remove(request: web.Request) -> web.Response:
    req = await _parse(request, _Token)
    if isinstance(req, web.Response):
        return req
    links = request.config_dict[LINKS]
    if req.access_token in links.plaid_removed:
        return error_response(request, "ITEM_NOT_FOUND", "the Item was removed")
    if not req.access_token.startswith("access-sandbox-"):
        return error_response(request, "INVALID_ACCESS_TOKEN", "provided access token is invalid")
    links.plaid_removed.add(req.access_token)
    return web.json_response({"request_id": request_id(request)})


async def institutions_get(request: web.Request) -> web.Response:
    req = await _parse(request, _Institutions)
    if isinstance(req, web.Response):
        return req
    if not 1 <= req.count <= 500 or req.offset < 0:
        return error_response(request, "INVALID_FIELD", "count must be 1..500, offset >= 0")
    rows = [i for i in directory(request.config_dict[SEED]) if i.country in req.country_codes]
    page = rows[req.offset : req.offset + req.count]
    return web.json_response(
        {
            "institutions": [_institution(i) for i in page],
            "total": len(rows),
            "request_id": request_id(request),
        }
    )


async def institutions_get_by_id(request: web.Request) -> web.Response:
    req = await _parse(request, _Institutions)
    if isinstance(req, web.Response):
        return req
    found = by_id(request.config_dict[SEED], "plaid", req.institution_id)
    if found is None:
        return error_response(request, "INVALID_INSTITUTION", "invalid institution_id provided")
    institution = _institution(found)
    if (req.options or {}).get("include_status"):
        institution["status"] = institution_status(request.config_dict[FAULT_BOOK], found)
    body = {"institution": institution, "request_id": request_id(request)}
    return web.json_response(body)


async def institutions_search(request: web.Request) -> web.Response:
    req = await _parse(request, _Institutions)
    if isinstance(req, web.Response):
        return req
    found = search(request.config_dict[SEED], req.query, tuple(req.country_codes))
    body = {"institutions": [_institution(i) for i in found], "request_id": request_id(request)}
    return web.json_response(body)


async def verification_key_get(request: web.Request) -> web.Response:
    req = await _parse(request, _Token)
    if isinstance(req, web.Response):
        return req
    key = request.config_dict[PLAID_SIGNING_KEY]
    if req.key_id != key.kid:
        return error_response(request, "INVALID_INPUT", "key_id not found")
    return web.json_response({"key": key.jwk, "request_id": request_id(request)})


async def plaid_context(request: web.Request) -> RequestContext:
    """The institution (and its country) a Plaid call is about, for targeted faults."""
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        return RequestContext()
    if not isinstance(body, dict):
        return RequestContext()
    links, seed = request.config_dict[LINKS], request.config_dict[SEED]
    institution: FakeInstitution | None = None
    if isinstance(body.get("access_token"), str):
        institution = links.plaid_institution(body["access_token"])
    elif isinstance(body.get("institution_id"), str):
        institution = by_id(seed, "plaid", body["institution_id"])
    if institution is None:
        return RequestContext()
    return RequestContext(
        institution_id=institution.plaid_id,
        institution_name=institution.name,
        region=institution.country,
    )


def add_link_routes(app: web.Application) -> None:
    app.router.add_post("/link/token/create", link_token_create)
    app.router.add_post("/item/public_token/exchange", public_token_exchange)
    app.router.add_post("/item/remove", item_remove)
    app.router.add_post("/institutions/get", institutions_get)
    app.router.add_post("/institutions/get_by_id", institutions_get_by_id)
    app.router.add_post("/institutions/search", institutions_search)
    app.router.add_post("/webhook_verification_key/get", verification_key_get)

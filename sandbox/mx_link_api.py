"""A local MX's users, Connect widget URLs, members and institutions."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from sandbox.faults import RequestContext
from sandbox.institutions import FakeInstitution, by_id, directory, search
from sandbox.links import LINKS, MxWidget
from sandbox.middleware import SEED
from sandbox.mx_api import MX_ACCEPT, check_headers, error_response, paged

# MX lists institutions 10 to 100 a page (other lists: to 1000).
MAX_INSTITUTIONS_PER_PAGE = 100

_USER = "/users/{user_guid}"
_MEMBER = _USER + "/members/{member_guid}"


class _UserBody(msgspec.Struct, frozen=True):
    id: str


class _CreateUser(msgspec.Struct, frozen=True):
    user: _UserBody


class _Widget(msgspec.Struct, frozen=True, kw_only=True):
    widget_type: str
    current_member_guid: str | None = None
    current_institution_code: str | None = None


class _WidgetRequest(msgspec.Struct, frozen=True):
    widget_url: _Widget


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type=MX_ACCEPT)


def _user(guid: str, user_ref: str) -> dict[str, Any]:
    return {"guid": guid, "id": user_ref, "email": None, "is_disabled": False, "metadata": None}


def _institution(i: FakeInstitution) -> dict[str, Any]:
    return {
        "code": i.mx_code,
        "name": i.name,
        "iso_country_code": i.country,
        "url": i.url,
        "supports_account_identification": "identity" in i.products,
        "supports_account_statement": False,
        "supports_account_verification": "auth" in i.products,
        "supports_transaction_history": True,
        "supports_oauth": False,
    }


async def list_users(request: web.Request) -> web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    users = request.config_dict[LINKS].mx_users
    wanted = request.query.get("id")
    rows = [_user(guid, ref) for ref, guid in users.items() if wanted in (None, ref)]
    return paged(request, "users", rows)


async def create_user(request: web.Request) -> web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    try:
        body = msgspec.json.decode(await request.read(), type=_CreateUser)
    except msgspec.DecodeError:
        return error_response(400, "A user object with an id is required.")
    guid, created = request.config_dict[LINKS].mx_user(body.user.id)
    if not created:
        return error_response(409, "A user with this id already exists.")
    return _json({"user": _user(guid, body.user.id)})


async def request_widget_url(request: web.Request) -> web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    try:
        body = msgspec.json.decode(await request.read(), type=_WidgetRequest)
    except msgspec.DecodeError:
        return error_response(400, "A widget_url object with a widget_type is required.")
    links = request.config_dict[LINKS]
    user_guid = request.match_info["user_guid"]
    if user_guid not in links.mx_users.values():
        return error_response(404, "User not found.")
    token = links.uuid().replace("-", "")
    links.mx_widgets[token] = MxWidget(
        user_guid=user_guid,
        member_guid=body.widget_url.current_member_guid,
        institution_code=body.widget_url.current_institution_code,
    )
    # The widget URL is what the person's app opens; the sandbox's "widget" is
    # the admin link-complete endpoint, which accepts this URL as the link token.
    url = f"{request.url.origin()}/mx/widgets/connect/{token}"
    user_ref = next(ref for ref, guid in links.mx_users.items() if guid == user_guid)
    widget = {"type": body.widget_url.widget_type, "url": url, "user_id": user_ref}
    return _json({"widget_url": widget})


async def read_member(request: web.Request) -> web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    links = request.config_dict[LINKS]
    member = request.match_info["member_guid"]
    if not member.startswith("MBR-") or member in links.mx_removed:
        return error_response(404, "Member not found.")
    institution = links.mx_institution(request.match_info["user_guid"], member)
    body = {
        "guid": member,
        "user_guid": request.match_info["user_guid"],
        "institution_code": institution.mx_code,
        "connection_status": "CONNECTED",
    }
    return _json({"member": body})


async def delete_member(request: web.Request) -> web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    links = request.config_dict[LINKS]
    member = request.match_info["member_guid"]
    if not member.startswith("MBR-") or member in links.mx_removed:
        return error_response(404, "Member not found.")
    links.mx_removed.add(member)
    return web.Response(status=204)


async def list_institutions(request: web.Request) -> web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    seed = request.config_dict[SEED]
    name = request.query.get("name")
    rows = search(seed, name) if name else list(directory(seed))
    rows_out = [_institution(i) for i in rows]
    return paged(request, "institutions", rows_out, max_per_page=MAX_INSTITUTIONS_PER_PAGE)


async def read_institution(request: web.Request) -> web.Response:
    refused = check_headers(request)
    if refused is not None:
        return refused
    found = by_id(request.config_dict[SEED], "mx", request.match_info["institution_code"])
    if found is None:
        return error_response(404, "Institution not found.")
    return _json({"institution": _institution(found)})


async def mx_context(request: web.Request) -> RequestContext:
    """The institution (and its country) an MX call is about, for targeted faults."""
    links, seed = request.config_dict[LINKS], request.config_dict[SEED]
    institution: FakeInstitution | None = None
    if "member_guid" in request.match_info:
        institution = links.mx_institution(
            request.match_info["user_guid"], request.match_info["member_guid"]
        )
    elif "institution_code" in request.match_info:
        institution = by_id(seed, "mx", request.match_info["institution_code"])
    if institution is None:
        return RequestContext()
    return RequestContext(
        institution_id=institution.mx_code,
        institution_name=institution.name,
        region=institution.country,
    )


def add_link_routes(app: web.Application) -> None:
    app.router.add_get("/users", list_users)
    app.router.add_post("/users", create_user)
    app.router.add_post(_USER + "/widget_urls", request_widget_url)
    app.router.add_get(_MEMBER, read_member)
    app.router.add_delete(_MEMBER, delete_member)
    app.router.add_get("/institutions", list_institutions)
    app.router.add_get("/institutions/{institution_code}", read_institution)

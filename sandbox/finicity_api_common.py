"""What every fake Finicity route shares: its state, its error body, its token check."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
from aiohttp import web

from sandbox.finicity_api_data import API_ERRORS, is_aggregation_code


class FinicityState(msgspec.Struct, kw_only=True):
    tokens: set[str]
    customers: dict[str, str]
    deleted_logins: set[str]
    counter: itertools.count[int]


STATE = web.AppKey("finicity_state", FinicityState)


def error_response(code: str, message: str, status: int | None = None) -> web.Response:
    agg = is_aggregation_code(code)
    body = {"code": int(code) if agg else code, "message": message}
    return web.json_response(body, status=status or (500 if agg else API_ERRORS.get(code, 400)))


def query_int(value: str | None, default: int) -> int:
    """A query number; garbage becomes 0, which the caller refuses."""
    if value is None:
        return default
    return int(value) if value.isdigit() else 0


def authorised(request: web.Request) -> web.Response | None:
    if not request.headers.get("Finicity-App-Key"):
        return error_response("10026", "Missing parameter (Finicity-App-Key)")
    token = request.headers.get("Finicity-App-Token")
    if not token:
        return error_response("10024", "Missing parameter (Finicity-App-Token)")
    if token not in request.config_dict[STATE].tokens:
        return error_response("10022", "Invalid (Finicity-App-Token)")
    return None


async def read_json(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = msgspec.json.decode(await request.read(), type=dict[str, Any])
    except msgspec.DecodeError:
        return error_response("14020", "Bad request.")
    return body

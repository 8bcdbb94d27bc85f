"""The admin API: arm and clear faults, read call counts, reset between runs."""

from __future__ import annotations

import msgspec
from aiohttp import web

from services.sandbox.faults import Fault
from services.sandbox.middleware import FAULT_BOOK


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def arm_fault(request: web.Request) -> web.Response:
    """POST /_admin/faults: arm one fault; answers its id."""
    try:
        fault = msgspec.json.decode(await request.read(), type=Fault)
    except msgspec.DecodeError as exc:
        return _bad_request(str(exc))
    fault_id = request.app[FAULT_BOOK].arm(fault)
    return web.json_response({"id": fault_id, **msgspec.to_builtins(fault)}, status=201)


async def list_faults(request: web.Request) -> web.Response:
    """GET /_admin/faults: the armed faults, each with how many firings remain."""
    return web.json_response({"faults": request.app[FAULT_BOOK].faults()})


async def clear_faults(request: web.Request) -> web.Response:
    """DELETE /_admin/faults: disarm every fault; counts are kept."""
    request.app[FAULT_BOOK].clear()
    return web.json_response({"faults": []})


async def list_calls(request: web.Request) -> web.Response:
    """GET /_admin/calls: {provider: {endpoint: {calls, faulted}}}."""
    return web.json_response(request.app[FAULT_BOOK].calls())


async def reset(request: web.Request) -> web.Response:
    """POST /_admin/reset: no faults, no counts, the dice re-seeded."""
    request.app[FAULT_BOOK].reset()
    return web.json_response({"reset": True})


ADMIN_ROUTES = [
    web.post("/_admin/faults", arm_fault),
    web.get("/_admin/faults", list_faults),
    web.delete("/_admin/faults", clear_faults),
    web.get("/_admin/calls", list_calls),
    web.post("/_admin/reset", reset),
]

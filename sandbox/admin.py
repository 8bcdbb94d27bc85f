"""The admin API: arm and clear faults, read call counts, reset between runs."""

from __future__ import annotations

import msgspec
from aiohttp import web

from sandbox.faults import Fault
from sandbox.idempotency import IDEMPOTENCY
from sandbox.links import LINKS
from sandbox.middleware import FAULT_BOOK, TRUTH
from sandbox.scenarios import ScenarioError
from sandbox.scenarios import available as available_scenarios
from sandbox.scenarios import load as load_scenario


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
    """POST /_admin/reset: no faults, no counts, no links, no idempotency keys, the dice re-seeded,
    every bank back to the end of its history, and the sandbox's starting scenario restarted."""
    request.app[FAULT_BOOK].reset()
    request.app[LINKS].reset()
    request.app[TRUTH].reset()
    request.app[IDEMPOTENCY].reset()
    return web.json_response({"reset": True})


class _ScenarioChoice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str | None


async def switch_scenario(request: web.Request) -> web.Response:
    """PUT /_admin/scenario {"name": ...}: run that scenario from now (null: none)."""
    try:
        choice = msgspec.json.decode(await request.read(), type=_ScenarioChoice)
        scenario = load_scenario(choice.name) if choice.name else None
    except (msgspec.DecodeError, ScenarioError) as exc:
        return _bad_request(str(exc))
    request.app[FAULT_BOOK].load_scenario(scenario)
    return web.json_response(request.app[FAULT_BOOK].scenario())


async def show_scenario(request: web.Request) -> web.Response:
    """GET /_admin/scenario: the active scenario, how long it has run, its faults."""
    return web.json_response(
        {**request.app[FAULT_BOOK].scenario(), "available": available_scenarios()}
    )


ADMIN_ROUTES = [
    web.post("/_admin/faults", arm_fault),
    web.get("/_admin/faults", list_faults),
    web.delete("/_admin/faults", clear_faults),
    web.get("/_admin/calls", list_calls),
    web.post("/_admin/reset", reset),
    web.put("/_admin/scenario", switch_scenario),
    web.get("/_admin/scenario", show_scenario),
]

"""The fault middleware each fake provider runs behind, and the keys it shares."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from services.sandbox.faults import Fault, FaultBook

FAULT_BOOK = web.AppKey("fault_book", FaultBook)
SEED = web.AppKey("seed", int)

# What a provider answers for an armed fault, or None to serve the call normally
# (a fault that only adds latency, or one aimed at another kind of call).
ErrorResponder = Callable[[web.Request, Fault], web.Response | None]

# Bytes no JSON parser accepts, the kind a misconfigured gateway sends back.
GARBAGE_BODY = b"<html><body><h1>502 Bad Gateway</h1>\x00\xff</body></html>"


def fault_middleware(
    provider: str,
    prefix: str,
    respond: ErrorResponder,
    accepts: Callable[[Fault, str], bool] | None = None,
) -> Middleware:
    """Count every call to `provider` and apply the armed fault that fires on it."""

    @web.middleware
    async def apply_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else request.path
        endpoint = template.removeprefix(prefix) or "/"
        fault = request.config_dict[FAULT_BOOK].draw(provider, endpoint, accepts)
        if fault is None:
            return await handler(request)
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000.0)
        if fault.body == "garbage":
            return web.Response(
                status=fault.status or 200, body=GARBAGE_BODY, content_type="application/json"
            )
        if fault.body == "truncated":
            return _truncated(await handler(request), fault)
        response = respond(request, fault)
        if response is None:
            return await handler(request)
        if fault.retry_after_s is not None:
            response.headers["Retry-After"] = str(math.ceil(fault.retry_after_s))
        return response

    return apply_faults


def _truncated(response: web.StreamResponse, fault: Fault) -> web.StreamResponse:
    """The real answer cut in half, with a Content-Length that agrees, so the
    HTTP exchange succeeds and only the JSON is broken."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body = response.body
    return web.Response(
        status=fault.status or response.status,
        body=body[: max(1, len(body) // 2)],
        content_type="application/json",
    )

"""The fault middleware each fake provider runs behind, and the app keys every route shares."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sandbox.faults import Fault, FaultBook, RequestContext
from sandbox.truth import TruthBook

FAULT_BOOK = web.AppKey("fault_book", FaultBook)
SEED = web.AppKey("seed", int)
TRUTH = web.AppKey("truth", TruthBook)

# What a provider answers for an armed fault, or None to serve the call normally
# (a fault that only adds latency, or one aimed at another kind of call).
ErrorResponder = Callable[[web.Request, Fault], web.Response | None]
# Which institution and region a call is about, for faults aimed at one of them.
ContextResolver = Callable[[web.Request], Awaitable[RequestContext]]

# Bytes no JSON parser accepts, the kind a misconfigured gateway sends back.
GARBAGE_BODY = b"<html><body><h1>502 Bad Gateway</h1>\x00\xff</body></html>"
DRIP_CHUNK_BYTES = 8
DRIP_INTERVAL_S = 0.05


def fault_middleware(
    provider: str,
    prefix: str,
    respond: ErrorResponder,
    accepts: Callable[[Fault, str], bool] | None = None,
    context: ContextResolver | None = None,
) -> Middleware:
    """Count every call to `provider` and apply the armed fault that fires on it."""

    @web.middleware
    async def apply_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else request.path
        endpoint = template.removeprefix(prefix) or "/"
        book = request.config_dict[FAULT_BOOK]
        # Resolving what a call is about reads its body and the links: the cost of
        # a targeted fault, not of every call (issue #13).
        ctx = None
        if context is not None and book.aims_at_institutions(provider):
            ctx = await context(request)
        fault = book.draw(provider, endpoint, accepts, ctx)
        if fault is None:
            return await handler(request)
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000.0)
        if fault.connection == "hang":
            # Answer nothing until the client gives up (or the hang ends).
            await asyncio.sleep(fault.hang_s)
            raise web.HTTPGatewayTimeout
        if fault.body == "garbage":
            return web.Response(
                status=fault.status or 200, body=GARBAGE_BODY, content_type="application/json"
            )
        if fault.body == "truncated":
            return _truncated(await handler(request), fault)
        response = respond(request, fault)
        if response is None:
            served = await handler(request)
            return await _drip(request, served) if fault.connection == "drip" else served
        if isinstance(fault.retry_after_s, float | int):
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


async def _drip(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """The real answer, a few bytes at a time: a connection that is alive but crawling."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body = response.body
    stream = web.StreamResponse(status=response.status)
    stream.content_type = response.content_type
    stream.content_length = len(body)
    await stream.prepare(request)
    for start in range(0, len(body), DRIP_CHUNK_BYTES):
        await stream.write(body[start : start + DRIP_CHUNK_BYTES])
        await asyncio.sleep(DRIP_INTERVAL_S)
    await stream.write_eof()
    return stream

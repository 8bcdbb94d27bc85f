"""The HTTP API: health, readiness and the read models."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from aiohttp import web

from projections.connection_attempts import connection_history
from projections.provider_health import provider_health

POOL = web.AppKey("pool", asyncpg.Pool)
NatsReady = Callable[[], bool]
NATS_READY: web.AppKey[NatsReady] = web.AppKey("nats_ready")
READY_TIMEOUT_S = 2.0
MAX_HISTORY = 1000


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, UUID):
        return str(obj)
    raise NotImplementedError(type(obj))


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def bad_request(message: str) -> web.Response:
    return json_response({"error": {"code": "bad_request", "message": message}}, status=400)


async def healthz(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app[POOL].fetchval("SELECT 1"), READY_TIMEOUT_S)
        checks["postgres"] = "ok"
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        checks["postgres"] = f"unreachable: {type(exc).__name__}"
    checks["nats"] = "ok" if request.app[NATS_READY]() else "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def providers_health(request: web.Request) -> web.Response:
    region = request.query.get("region")
    if region is not None and not (2 <= len(region) <= 16 and region.replace("_", "").isalpha()):
        return bad_request("region must be 2-16 letters, e.g. US")
    rows = await provider_health(request.app[POOL], region)
    return json_response({"region": region, "providers": rows})


async def connection_history_view(request: web.Request) -> web.Response:
    raw_limit = request.query.get("limit", "50")
    try:
        limit = int(raw_limit)
    except ValueError:
        return bad_request(f"limit must be an integer, got {raw_limit!r}")
    if not 1 <= limit <= MAX_HISTORY:
        return bad_request(f"limit must be between 1 and {MAX_HISTORY}")
    account_id = request.match_info["account_id"]
    rows = await connection_history(
        request.app[POOL], account_id, request.query.get("space_id"), limit
    )
    return json_response({"account_id": account_id, "attempts": rows})


def create_app(pool: asyncpg.Pool, nats_ready: Callable[[], bool]) -> web.Application:
    app = web.Application()
    app[POOL] = pool
    app[NATS_READY] = nats_ready
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/v1/providers/health", providers_health),
            web.get("/v1/connections/{account_id}/history", connection_history_view),
        ]
    )
    return app


ServeFn = Callable[[web.Application], Awaitable[None]]

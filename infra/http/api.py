"""The HTTP API: health, readiness, the read models, their OpenAPI description and the
AsyncAPI description of the NATS interface.

`ROUTES` is the route table; `infra/http/openapi.py` describes each entry and
`infra/http/auth.py` says who may call it. A bad parameter anywhere raises
`InvalidParameterError`, answered here with a 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from infra.http import read_models as read
from infra.http.auth import ACCESS, ACCESS_RULES, TOKENS, ApiToken, TokenBook, authorise
from infra.http.context import (
    CLOCK,
    EVENTS_TABLE,
    POOL,
    READ_SETTINGS,
    Clock,
    bad_request,
    json_response,
)
from infra.http.openapi import OPENAPI_OPERATIONS, OPERATIONS, asyncapi_view, openapi_view
from infra.http.params import InvalidParameterError
from infra.http.responses import Liveness, Readiness
from projections.settings import ReadModelSettings

NatsReady = Callable[[], bool]
NATS_READY: web.AppKey[NatsReady] = web.AppKey("nats_ready")
READY_TIMEOUT_S = 2.0
DEFAULT_EVENTS_TABLE = "syncyard_events"


async def healthz(_: web.Request) -> web.Response:
    return json_response(Liveness(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app[POOL].fetchval("SELECT 1"), READY_TIMEOUT_S)
        checks["postgres"] = "ok"
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        checks["postgres"] = f"unreachable: {type(exc).__name__}"
    checks["nats"] = "ok" if request.app[NATS_READY]() else "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return json_response(Readiness(ready=ready, checks=checks), status=200 if ready else 503)


@web.middleware
async def bad_parameters_are_400(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidParameterError as exc:
        return bad_request(str(exc))


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/v1/openapi.json", openapi_view),
    web.get("/v1/asyncapi.json", asyncapi_view),
    web.get("/v1/providers/health", read.providers_health),
    web.get("/v1/providers/reliability", read.providers_reliability),
    web.get("/v1/providers/failover-rates", read.providers_failover_rates),
    web.get("/v1/breakers", read.breakers_view),
    web.get("/v1/connections/{account_id}/history", read.connection_history_view),
    web.get("/v1/connections/{account_id}/status", read.connection_status_view),
    web.get("/v1/connections/{account_id}/syncs", read.connection_syncs_view),
    web.get("/v1/connections/{account_id}/reliability", read.connection_reliability_view),
    web.get("/v1/accounts/{account_id}/transactions/changes", read.transaction_changes_view),
    web.get("/v1/admin/stats", read.admin_stats),
    web.get("/v1/metrics/overview", read.metrics_overview_view),
    web.get("/v1/sagas", read.sagas_view),
]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    pool: asyncpg.Pool,
    nats_ready: Callable[[], bool],
    *,
    tokens: Iterable[ApiToken],
    read_settings: ReadModelSettings | None = None,
    events_table: str = DEFAULT_EVENTS_TABLE,
    clock: Clock = _utc_now,
) -> web.Application:
    """The API over `pool`, for callers holding one of `tokens` (none: a ValueError, as
    an API without tokens would be open or useless); `clock` is the query moment of
    every window (tests fix it)."""
    # Authorisation first: a caller without a token learns nothing, not even a 400.
    app = web.Application(middlewares=[authorise, bad_parameters_are_400])
    app[TOKENS] = TokenBook(tokens)
    app[ACCESS_RULES] = dict(ACCESS)
    app[POOL] = pool
    app[NATS_READY] = nats_ready
    app[READ_SETTINGS] = read_settings or ReadModelSettings()
    app[EVENTS_TABLE] = events_table
    app[CLOCK] = clock
    app[OPENAPI_OPERATIONS] = dict(OPERATIONS)
    app.add_routes(ROUTES)
    return app

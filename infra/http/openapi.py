"""The OpenAPI 3.1 description of the HTTP API, kept as data beside the route table,
and the AsyncAPI description of the NATS interface, served beside it.

`OPERATIONS` describes every route `infra/http/api.py` registers; a route added
elsewhere (e.g. from infra/bootstrap.py) adds its own entry to the app's
`OPENAPI_OPERATIONS`. `undocumented_routes` lists any route without one, and
a test keeps that list empty. The response bodies' schemas are generated from
the structs the handlers encode (`RESPONSE_TYPES`, `infra/http/responses.py`).
Each operation's security (bearer token or none), roles and 401/403 answers
come from `infra/http/auth.py`'s `ACCESS`, the same table the API enforces.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from aiohttp import web

from events.asyncapi import asyncapi_document
from events.feed import FeedPage
from infra.http import responses as body
from infra.http.auth import ACCESS, Access
from infra.http.params import BREAKERS_PAGE, MAX_DAYS, MAX_LIMIT
from projections.overview import MetricsOverview
from projections.saga_status import SAGA_STATUSES

Operation = dict[str, Any]
OperationKey = tuple[str, str]  # (lowercase method, path template)
OPENAPI_OPERATIONS: web.AppKey[dict[OperationKey, Operation]] = web.AppKey("openapi_operations")

# What each route of `OPERATIONS` answers with (its 200, and the 503 of /readyz).
RESPONSE_TYPES: dict[str, type[msgspec.Struct]] = {
    "/healthz": body.Liveness,
    "/readyz": body.Readiness,
    "/v1/providers/health": body.ProviderHealth,
    "/v1/providers/reliability": body.ProviderReliability,
    "/v1/providers/failover-rates": body.FailoverRates,
    "/v1/breakers": body.Breakers,
    "/v1/connections/{account_id}/history": body.ConnectionHistory,
    "/v1/connections/{account_id}/status": body.ConnectionStatuses,
    "/v1/connections/{account_id}/syncs": body.ConnectionSyncs,
    "/v1/connections/{account_id}/reliability": body.ConnectionReliability,
    "/v1/accounts/{account_id}/transactions/changes": FeedPage,
    "/v1/admin/stats": body.AdminStats,
    "/v1/metrics/overview": MetricsOverview,
    "/v1/sagas": body.Sagas,
}
# The two descriptions are documents of their own standards, not structs of ours.
DOCUMENTS: dict[str, dict[str, Any]] = {
    "/v1/openapi.json": {"type": "object", "description": "an OpenAPI 3.1 document"},
    "/v1/asyncapi.json": {"type": "object", "description": "an AsyncAPI 3.0 document"},
}

_REFS, SCHEMAS = msgspec.json.schema_components(
    [*RESPONSE_TYPES.values(), body.ApiError], ref_template="#/components/schemas/{name}"
)
_RESPONSE_SCHEMAS = dict(zip([*RESPONSE_TYPES, "error"], _REFS, strict=True))

_ERROR = {
    "description": "A bad parameter; the message names it and what it accepts",
    "content": {"application/json": {"schema": _RESPONSE_SCHEMAS["error"]}},
}


def _q(
    name: str, description: str, schema: dict[str, Any], required: bool = False
) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}  # fmt: skip


ACCOUNT = {"name": "account_id", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "maxLength": 128}}  # fmt: skip
SPACE = _q("space_id", "The account's space: one of the token's",
           {"type": "string", "minLength": 1, "maxLength": 128}, True)  # fmt: skip
REGION = _q("region", "Only this region", {"type": "string", "pattern": "^[A-Za-z_-]{2,16}$"})
PROVIDER = _q("provider", "Only this provider", {"type": "string", "pattern": "^[a-z0-9_]{1,32}$"})
LIMIT = _q("limit", "Rows to return, newest first",
           {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50})  # fmt: skip
FEED_SINCE = _q("since", "The last position already folded; 0 for the whole feed",
                {"type": "integer", "minimum": 0, "default": 0})  # fmt: skip
FEED_LIMIT = _q("limit", "Entries to return, oldest first",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                 "default": 100})  # fmt: skip
BREAKERS_LIMIT = _q("limit", "Breakers to return, in order of provider, region, then bank",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                     "default": BREAKERS_PAGE})  # fmt: skip
AFTER = _q("after", "The `next_after` of the previous page, unchanged; absent: the first page",
           {"type": "string", "maxLength": 1024})  # fmt: skip
AS_OF = _q(
    "as_of",
    "The moment the windows and periods end at (ISO 8601 with offset, not in the future); "
    "default now. Running totals and last-* fields stay current: a full past state comes "
    "from `syncyard audit ... --as-of`",
    {"type": "string", "format": "date-time"},
)


def _days(default: int) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": default}
    return _q("days", "Length of the period ending at as_of", schema)


def _get(
    summary: str, params: list[dict[str, Any]], ok: str, *, not_found: bool = False
) -> Operation:
    responses: dict[str, Any] = {
        "200": {"description": ok},
        "400": _ERROR,
    }
    if not_found:
        responses["404"] = {**_ERROR, "description": "No connection for this account"}
    return {"summary": summary, "parameters": params, "responses": responses}


OPERATIONS: dict[OperationKey, Operation] = {
    ("get", "/healthz"): _get("Liveness", [], "The process answers"),
    ("get", "/readyz"): {
        **_get("Readiness: PostgreSQL and NATS reachable", [], "Ready"),
        "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
    },
    ("get", "/v1/openapi.json"): _get("This description", [], "OpenAPI 3.1 document"),
    ("get", "/v1/asyncapi.json"): _get(
        "The NATS interface: commands, results, events and dead letters, their subjects and "
        "payload schemas (the same document `make schema` writes)",
        [],
        "AsyncAPI 3.0 document",
    ),
    ("get", "/v1/providers/health"): _get(
        "Per provider and region: status, health score (0-100), error rate, average and p95 "
        "response time over 5 min and 24 h, last success/failure/error, breaker state",
        [REGION, PROVIDER, AS_OF],
        "Provider health",
    ),
    ("get", "/v1/providers/reliability"): _get(
        "Per provider over N days: syncs total/successful/failed, success rate, average "
        "duration, calls and estimated cost (per-call prices from configuration)",
        [_days(7), AS_OF],
        "Provider reliability and cost",
    ),
    ("get", "/v1/providers/failover-rates"): _get(
        "Per provider, region and hour: calls, failovers away from the provider, their rate",
        [_days(1), REGION, AS_OF],
        "Failover rates by hour",
    ),
    ("get", "/v1/breakers"): _get(
        "Every breaker that ever changed state: per provider and bank, and provider-wide; "
        "what opened it (failed calls or the provider's status report, and whose trouble), "
        "operators' holds (`POST /v1/breakers/force`)",
        [
            PROVIDER,
            REGION,
            _q(
                "state",
                "`not_closed`: only open, half-open or held breakers",
                {"type": "string", "enum": ["not_closed"]},
            ),
            BREAKERS_LIMIT,
            AFTER,
        ],
        "A page of breakers; `has_more` and `next_after` lead to the next one",
    ),
    ("get", "/v1/connections/{account_id}/history"): _get(
        "Every provider call for the account: attempt type, status, error, response time, "
        "failover from/to",
        [ACCOUNT, SPACE, LIMIT],
        "Connection attempts, newest first",
    ),
    ("get", "/v1/connections/{account_id}/status"): _get(
        "Status, last successful sync, consecutive failures, maintenance, re-auth, next retry",
        [ACCOUNT, SPACE, AS_OF],
        "Connection status",
        not_found=True,
    ),
    ("get", "/v1/connections/{account_id}/syncs"): _get(
        "How each command for the account ended (sync log)",
        [ACCOUNT, SPACE, LIMIT],
        "Sync log, newest first",
    ),
    ("get", "/v1/connections/{account_id}/reliability"): _get(
        "Per connection over N days: total, successful, failed, success rate, average duration",
        [ACCOUNT, SPACE, _days(7), AS_OF],
        "Connection reliability",
        not_found=True,
    ),
    ("get", "/v1/accounts/{account_id}/transactions/changes"): _get(
        "The account's transaction feed after a position: added, modified and removed "
        "transactions in syncyard ids, each with the provider that reported it",
        [ACCOUNT, SPACE, FEED_SINCE, FEED_LIMIT],
        "Feed entries and the position to go on from",
    ),
    ("get", "/v1/admin/stats"): _get(
        "Per provider: breaker, 24 h success rate, average response, last error; and each "
        "projection's position, events behind the log, and age of its last update",
        [],
        "Admin statistics",
    ),
    ("get", "/v1/metrics/overview"): _get(
        "Connections total/active/with errors/in maintenance/requiring re-auth and health rate; "
        "syncs total/successful/failed and success rate; reliability score (0-100: 70% sync "
        "success rate, 30% connection health rate)",
        [_days(1), AS_OF],
        "Metrics overview",
    ),
    ("get", "/v1/sagas"): _get(
        "Link and reconnect sagas, most recently moved first, with how many are in each "
        "status: `?status=needs_attention` lists the ones an operator must look at "
        "(`GET /v1/sagas/{saga_id}` shows one in full; `saga.resume` resumes it)",
        [
            _q(
                "status",
                "Only sagas in this status",
                {"type": "string", "enum": list(SAGA_STATUSES)},
            ),
            LIMIT,
        ],
        "Sagas and counts per status",
    ),
}


def _with_response_schemas(operations: dict[OperationKey, Operation]) -> None:
    """Each route's success (and readiness failure) body: a generated schema, or a document."""
    for (_, path), operation in operations.items():
        schema = _RESPONSE_SCHEMAS[path] if path in RESPONSE_TYPES else DOCUMENTS[path]
        for code in ("200", "503"):
            if code in operation["responses"]:
                operation["responses"][code]["content"] = {"application/json": {"schema": schema}}


_with_response_schemas(OPERATIONS)


BEARER = "bearerToken"
_SCOPES = {
    "space": "only the space named by `space_id`, which must be one of the token's",
    "saga": "only a saga of one of the token's spaces",
    "listing": "only the sagas of the token's spaces, and their counts",
    "provider": "provider-wide figures, the same for every space",
    "fleet": "counts over every space: a token for every space (`*`) only",
    "none": "no data of any space",
}
_UNAUTHORISED = {
    "description": "No bearer token, or an unknown one (`WWW-Authenticate: Bearer`)",
    "content": {"application/json": {"schema": _RESPONSE_SCHEMAS["error"]}},
}
_FORBIDDEN = {
    "description": "The token's role may not call this route, or it does not reach the space",
    "content": {"application/json": {"schema": _RESPONSE_SCHEMAS["error"]}},
}


def _secured(operation: Operation, access: Access | None) -> Operation:
    """The operation with who may call it: open, or a bearer token of some roles."""
    if access is None:  # served without a rule: `authorise` refuses every caller
        return {**operation, "x-no-access-rule": True}
    if access.scope == "open":
        return {**operation, "security": []}
    roles = sorted(role.value for role in access.roles)
    return {
        **operation,
        "security": [{BEARER: []}],
        "x-roles": roles,
        "description": f"Roles: {', '.join(roles)}. Scope: {_SCOPES[access.scope]}.",
        "responses": {**operation["responses"], "401": _UNAUTHORISED, "403": _FORBIDDEN},
    }


def openapi_document(operations: dict[OperationKey, Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Operation]] = {}
    for key, operation in sorted(operations.items(), key=lambda kv: kv[0][1]):
        paths.setdefault(key[1], {})[key[0]] = _secured(operation, ACCESS.get(key))
    return {
        "openapi": "3.1.0",
        "info": {"title": "syncyard", "version": "1"},
        "paths": paths,
        "security": [{BEARER: []}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from SYNCYARD_API_TOKENS(_FILE), or the "
                    "local admin token `syncyard up` writes to its state folder (api-token)",
                }
            },
        },
    }


def _served(app: web.Application) -> dict[OperationKey, web.AbstractRoute]:
    return {
        (route.method.lower(), route.resource.canonical): route
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"  # HEAD rides on GET
    }


def undocumented_routes(app: web.Application) -> list[OperationKey]:
    """Routes the app serves that its OpenAPI description leaves out."""
    return sorted(_served(app).keys() - app[OPENAPI_OPERATIONS].keys())


async def openapi_view(request: web.Request) -> web.Response:
    """The description; a route nobody described still appears, flagged, with its docstring."""
    described: dict[OperationKey, Operation] = request.app[OPENAPI_OPERATIONS]
    operations = dict(described)
    for key, route in _served(request.app).items():
        if key not in operations:
            doc = (getattr(route.handler, "__doc__", None) or "").strip().splitlines()
            operations[key] = {
                "summary": doc[0] if doc else f"{key[0].upper()} {key[1]}",
                "x-undocumented": True,
                "responses": {"default": {"description": "Not described yet"}},
            }
    return web.json_response(openapi_document(operations))


@functools.cache
def _asyncapi_json() -> bytes:
    # The contract is fixed for the life of the process: generated once, on first ask.
    return msgspec.json.encode(asyncapi_document())


async def asyncapi_view(_: web.Request) -> web.Response:
    """The NATS interface as an AsyncAPI 3.0 document, generated from the contract's structs."""
    return web.Response(body=_asyncapi_json(), content_type="application/json")

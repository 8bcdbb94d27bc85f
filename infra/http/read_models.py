"""HTTP handlers serving the read models: provider health, connections, reliability, admin.

Each handler reads its parameters through `api_params` (a bad one raises
`InvalidParameterError`, which the API answers with a 400) and takes the query moment
from the app's clock, or from `as_of` where the route accepts it.
"""

from __future__ import annotations

from typing import cast

from aiohttp import web

from events.feed import FeedPage
from infra.http import responses as body
from infra.http.auth import CALLER
from infra.http.context import CLOCK, EVENTS_TABLE, POOL, READ_SETTINGS, json_response
from infra.http.params import (
    BREAKERS_PAGE,
    InvalidParameterError,
    as_of_param,
    choice_param,
    cursor_param,
    int_param,
    limit_param,
    page_cursor,
    period,
    provider_param,
    region_param,
    reject_unknown,
    text_param,
)
from projections.breakers import BreakerKey, breaker_key, list_breakers
from projections.connection_attempts import connection_history
from projections.connection_status import connection_status
from projections.feed import last_position, read_feed
from projections.overview import metrics_overview, projection_lag
from projections.provider_health_query import provider_health
from projections.reliability import connection_reliability, failover_rates, provider_reliability
from projections.saga_status import (
    SAGA_STATUSES,
    SagaCounts,
    SagaRow,
    SagaStatus,
    saga_counts,
    sagas_by_status,
)
from projections.sync_log import sync_log
from services.connections.state import connection_id_for
from services.ports import DbConnection

DEFAULT_DAYS = 7


def _account(request: web.Request) -> tuple[str, str]:
    """The account and its space: every account route is per space, the caller's token's."""
    account_id = text_param(request.match_info["account_id"], "account_id")
    assert account_id is not None  # a path segment is never absent
    space_id = text_param(request.query.get("space_id"), "space_id")
    if space_id is None:
        # `authorise` refuses this first; kept so no handler ever reads across spaces.
        raise InvalidParameterError("space_id is required: account routes are per space")
    return account_id, space_id


async def providers_health(request: web.Request) -> web.Response:
    query = request.query
    reject_unknown(query, ("region", "provider", "as_of"))
    region, provider = region_param(query), provider_param(query)
    now = as_of_param(query, request.app[CLOCK]())
    async with request.app[POOL].acquire() as conn:
        rows = await provider_health(
            conn,
            now=now,
            thresholds=request.app[READ_SETTINGS].health,
            region=region,
            provider=provider,
        )
    return json_response(body.ProviderHealth(region=region, as_of=now, providers=rows))


async def breakers_view(request: web.Request) -> web.Response:
    """A page of breakers (`limit`, 100 unless told, 1000 at most); `after` is the
    previous page's `next_after`."""
    query = request.query
    reject_unknown(query, ("region", "provider", "state", "limit", "after"))
    region, provider = region_param(query), provider_param(query)
    not_closed = choice_param(query, "state", ("not_closed",)) is not None
    limit = limit_param(query, default=BREAKERS_PAGE)
    # cursor_param decoded it strictly into a BreakerKey, or refused it.
    after = cast("BreakerKey | None", cursor_param(query, BreakerKey))
    async with request.app[POOL].acquire() as conn:
        rows = await list_breakers(
            conn,
            provider=provider,
            region=region,
            not_closed=not_closed,
            after=after,
            limit=limit + 1,  # one more than asked: is there a next page?
        )
    page, has_more = rows[:limit], len(rows) > limit
    return json_response(
        body.Breakers(
            breakers=page,
            has_more=has_more,
            next_after=page_cursor(breaker_key(page[-1])) if has_more else None,
        )
    )


async def providers_reliability(request: web.Request) -> web.Response:
    reject_unknown(request.query, ("days", "as_of"))
    since, until = period(request.query, request.app[CLOCK](), DEFAULT_DAYS)
    settings = request.app[READ_SETTINGS]
    async with request.app[POOL].acquire() as conn:
        rows = await provider_reliability(conn, since, until, settings.call_prices)
    return json_response(
        body.ProviderReliability(
            since=since, until=until, currency=settings.currency, providers=rows
        )
    )


async def providers_failover_rates(request: web.Request) -> web.Response:
    reject_unknown(request.query, ("days", "region", "as_of"))
    region = region_param(request.query)
    since, until = period(request.query, request.app[CLOCK](), 1)
    async with request.app[POOL].acquire() as conn:
        rows = await failover_rates(conn, since, until, region)
    return json_response(body.FailoverRates(since=since, until=until, region=region, hours=rows))


async def connection_history_view(request: web.Request) -> web.Response:
    reject_unknown(request.query, ("limit", "space_id"))
    limit = limit_param(request.query)
    account_id, space_id = _account(request)
    async with request.app[POOL].acquire() as conn:
        rows = await connection_history(conn, account_id, space_id, limit)
    return json_response(body.ConnectionHistory(account_id=account_id, attempts=rows))


async def connection_status_view(request: web.Request) -> web.Response:
    reject_unknown(request.query, ("space_id", "as_of"))
    account_id, space_id = _account(request)
    now = as_of_param(request.query, request.app[CLOCK]())
    async with request.app[POOL].acquire() as conn:
        rows = await connection_status(conn, account_id, space_id, now)
    if not rows:
        return _not_found(f"no connection for account {account_id!r}")
    return json_response(
        body.ConnectionStatuses(account_id=account_id, as_of=now, connections=rows)
    )


async def connection_syncs_view(request: web.Request) -> web.Response:
    reject_unknown(request.query, ("limit", "space_id"))
    limit = limit_param(request.query)
    account_id, space_id = _account(request)
    async with request.app[POOL].acquire() as conn:
        rows = await sync_log(conn, account_id, space_id, limit)
    return json_response(body.ConnectionSyncs(account_id=account_id, syncs=rows))


async def transaction_changes_view(request: web.Request) -> web.Response:
    """The account's feed after `since`: what `feed.read` answers, over HTTP."""
    reject_unknown(request.query, ("space_id", "since", "limit"))
    account_id, space_id = _account(request)
    since = int_param(request.query, "since", 0, 0, 2**62)
    limit = limit_param(request.query, default=100)
    connection_id = connection_id_for(space_id, account_id)
    async with request.app[POOL].acquire() as conn:
        entries = await read_feed(conn, connection_id, since=since, limit=limit)
        last = await last_position(conn, connection_id)
    position = entries[-1].position if entries else since
    return json_response(
        FeedPage(
            account_id=account_id,
            entries=tuple(entries),
            position=position,
            has_more=position < last,
        )
    )


async def connection_reliability_view(request: web.Request) -> web.Response:
    reject_unknown(request.query, ("days", "space_id", "as_of"))
    account_id, space_id = _account(request)
    since, until = period(request.query, request.app[CLOCK](), DEFAULT_DAYS)
    async with request.app[POOL].acquire() as conn:
        rows = await connection_reliability(conn, account_id, space_id, since, until)
    if not rows:
        return _not_found(f"no connection for account {account_id!r}")
    return json_response(
        body.ConnectionReliability(
            account_id=account_id, since=since, until=until, connections=rows
        )
    )


async def admin_stats(request: web.Request) -> web.Response:
    """Per provider and region: breaker, 24 h success rate and speed, last error; projection lag."""
    reject_unknown(request.query, ())
    now = request.app[CLOCK]()
    async with request.app[POOL].acquire() as conn:
        health = await provider_health(conn, now=now, thresholds=request.app[READ_SETTINGS].health)
        lag = await projection_lag(conn, request.app[EVENTS_TABLE], now)
    providers = [
        body.ProviderSummary(
            provider=row.provider,
            region=row.region,
            status=row.status,
            breaker=row.breaker,
            success_rate_24h=row.window_24h.success_rate,
            avg_response_ms_24h=row.window_24h.avg_response_ms,
            last_error=body.LastError(
                at=row.last_error_at,
                code=row.last_error_code,
                message=row.last_error_message,
                type=row.last_error_type,
            )
            if row.last_error_code is not None
            else None,
        )
        for row in health
    ]
    return json_response(body.AdminStats(as_of=now, providers=providers, projections=lag))


async def metrics_overview_view(request: web.Request) -> web.Response:
    reject_unknown(request.query, ("days", "as_of"))
    since, until = period(request.query, request.app[CLOCK](), 1)
    async with request.app[POOL].acquire() as conn:
        overview = await metrics_overview(conn, since, until)
    return json_response(overview)


def _not_found(message: str) -> web.Response:
    return json_response(
        body.ApiError(error=body.ErrorDetail(code="not_found", message=message)), status=404
    )


# `projections/saga_status.py`'s two queries, limited to some spaces: a token bound
# to spaces must not see other spaces' sagas, nor count them. (They belong beside
# the projection's own queries; kept here while auth is the HTTP API's alone.)
_SAGAS_IN = (
    "SELECT saga_id, kind, command_id, space_id, account_id, status, step, reason, "
    "started_at, updated_at FROM saga_status "
    "WHERE ($1::text IS NULL OR status = $1) AND space_id = ANY($3::text[]) "
    "ORDER BY updated_at DESC, saga_id LIMIT $2"
)
_COUNTS_IN = (
    "SELECT status, count(*) AS n FROM saga_status WHERE space_id = ANY($1::text[]) GROUP BY status"
)


async def _sagas_in(
    conn: DbConnection, spaces: list[str], status: str | None, limit: int
) -> tuple[list[SagaRow], dict[str, int]]:
    rows = await conn.fetch(_SAGAS_IN, status, limit, spaces)
    counts = dict.fromkeys(SAGA_STATUSES, 0)
    counts.update({r["status"]: int(r["n"]) for r in await conn.fetch(_COUNTS_IN, spaces)})
    return [SagaRow(**row) for row in rows], counts


async def sagas_view(request: web.Request) -> web.Response:
    """Sagas by status (e.g. the ones that need an operator), and how many in each: only
    the caller's spaces' sagas, counts included."""
    reject_unknown(request.query, ("status", "limit"))
    status = choice_param(request.query, "status", SAGA_STATUSES)
    limit = limit_param(request.query)
    spaces = request[CALLER].spaces
    async with request.app[POOL].acquire() as conn:
        if spaces is None:
            rows = await sagas_by_status(conn, status, limit)
            counts = await saga_counts(conn)
        else:
            rows, counts = await _sagas_in(conn, sorted(spaces), status, limit)
    # choice_param let through only one of SAGA_STATUSES, the values of SagaStatus.
    shown = cast("SagaStatus | None", status)
    return json_response(body.Sagas(status=shown, counts=SagaCounts(**counts), sagas=rows))

"""Each read model's numbers against a known event sequence, on a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from events.connection import ConnectionAttempted, ReauthRequired
from events.saga import (
    LinkAborted,
    LinkCompleted,
    SagaCompensating,
    SagaCompensationStarted,
    SagaNeedsAttention,
    SagaResumed,
    SagaStarted,
    SagaStepStarted,
)
from projections.connection_attempts import ConnectionAttemptsProjection, connection_history
from projections.connection_status import ConnectionStatusProjection, connection_status
from projections.health_rules import HealthThresholds
from projections.overview import ConnectionCounts, metrics_overview
from projections.provider_health import ProviderHealthProjection
from projections.provider_health_query import provider_health
from projections.reliability import connection_reliability, failover_rates, provider_reliability
from projections.saga_status import (
    SagaRow,
    SagaStatusProjection,
    register_saga_gauge,
    saga_counts,
    sagas_by_status,
)
from projections.sync_log import SyncLogProjection, sync_log
from tests.integration.read_model_events import (
    HOUR,
    MIN,
    T0,
    A,
    B,
    Log,
    apply,
    health_log,
    status_log,
)
from tests.support.harness import gauge_values

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def test_provider_health_counts_windows_at_their_edges_and_scores_them(
    conn: asyncpg.Connection,
) -> None:
    # Pages of 2: folds that span pages must add up to the same numbers.
    await apply(conn, health_log(), [ProviderHealthProjection()], page=2)
    rows = await provider_health(conn, now=T0, thresholds=HealthThresholds())
    mx, plaid = rows
    assert (plaid.successes, plaid.failures, plaid.timeouts) == (3, 3, 1)
    recent, day = plaid.window_5m, plaid.window_24h
    assert (recent.successes, recent.failures) == (2, 1)
    assert (day.successes, day.failures) == (3, 2)
    assert day.avg_response_ms == pytest.approx(4800 / 5)
    # p95 of 100, 200, 3000 ms is 3000 ms, reported as its bucket's upper bound.
    p95 = recent.p95_response_ms
    assert p95 is not None and 3000 <= p95 < 3000 * 2**0.25
    assert plaid.breaker.state == "closed" and plaid.breaker.since == T0 - 8 * MIN
    assert plaid.last_error_code == "PROVIDER_DOWN" and plaid.last_error_at == T0 - MIN
    # 60% success over 24 h, +10 (960 ms average), +5 (last success a minute ago).
    assert plaid.health_score == 75
    # 3 calls in 5 min are too few to judge: the 24 h error rate (40%) says degraded.
    assert plaid.status == "degraded"
    assert mx.breaker.state == "open" and mx.status == "down"

    later = await provider_health(conn, now=T0 + MIN, thresholds=HealthThresholds(), region="US")
    plaid_later = later[1]
    assert plaid_later.window_5m.successes == 1  # the call at T0-5min left the window
    assert plaid_later.window_24h.successes == 2  # and the one at T0-24h left this one


async def test_a_callers_bad_cursor_does_not_count_against_the_providers_health(
    conn: asyncpg.Connection,
) -> None:
    log = Log()
    log.call(A, T0 - MIN, provider="mx")
    for n in range(5):  # a cursor from another provider: the command's mistake
        log.add(
            ConnectionAttempted(
                **log.envelope(A, T0),
                command_id=f"bad-{n}",
                op="sync.transactions",
                provider="mx",
                region="US",
                attempt=1,
                failover=False,
                outcome="failure",
                response_time_ms=5.0,
                error_code="invalid_cursor",
                error_type="unknown",
                blame="caller",
            )
        )
    await apply(conn, log, [ProviderHealthProjection()], page=2)
    (mx,) = await provider_health(conn, now=T0, thresholds=HealthThresholds())
    assert (mx.successes, mx.failures) == (1, 0)
    assert mx.status == "healthy"


async def test_minute_buckets_far_behind_the_newest_are_pruned_but_totals_kept(
    conn: asyncpg.Connection,
) -> None:
    log = Log()
    for at in (T0 - 30 * HOUR, T0 - 25 * HOUR, T0):
        log.call(A, at)
    await apply(conn, log, [ProviderHealthProjection()], page=1)
    minutes = await conn.fetch("SELECT minute FROM provider_health_minutes ORDER BY minute")
    assert [r["minute"] for r in minutes] == [T0 - 25 * HOUR, T0]
    assert await conn.fetchval("SELECT successes FROM provider_health") == 3


async def test_connection_attempts_record_type_status_and_failover_across_pages(
    conn: asyncpg.Connection,
) -> None:
    log = Log()
    log.register(A, "acct-a", T0)
    log.call(A, T0, "plaid", "failure", command="c2", attempt=1)
    log.call(A, T0, "mx", "success", command="c2", attempt=2, failover=True)
    log.call(A, T0 + MIN, "plaid", "timeout", op="link.create", command="c3")
    log.call(A, T0 + MIN, "plaid", "success", op="link.update_mode", command="c4")
    await apply(conn, log, [ConnectionAttemptsProjection()], page=1)
    rows = await connection_history(conn, "acct-a", None, 10)
    assert [(r.provider, r.attempt_type, r.status) for r in rows] == [
        ("plaid", "reconnect", "success"),
        ("plaid", "initial", "timeout"),
        ("mx", "sync", "success"),
        ("plaid", "sync", "failure"),
    ]
    mx, plaid = rows[2], rows[3]
    assert mx.failover and mx.failover_from == "plaid" and mx.failover_to is None
    assert plaid.failover_to == "mx" and plaid.error_code == "PROVIDER_DOWN"
    assert await connection_history(conn, "acct-a", None, 1) == rows[:1]


async def test_connection_status_follows_failures_retries_and_maintenance_over_time(
    conn: asyncpg.Connection,
) -> None:
    log = status_log()
    await apply(conn, log, [ConnectionStatusProjection(), SyncLogProjection()], page=3)
    (a,) = await connection_status(conn, "acct-a", None, T0)
    assert a.last_successful_sync_at == T0 - HOUR and a.consecutive_failures == 2
    assert a.next_retry_at == T0 + 5 * MIN and a.status == "retrying"
    assert a.providers == ["plaid"] and not a.requires_reauth
    (a_later,) = await connection_status(conn, "acct-a", "space-1", T0 + 10 * MIN)
    assert a_later.status == "error"  # the retry time passed without an answer
    (b,) = await connection_status(conn, "acct-b", None, T0)
    assert b.status == "maintenance" and b.maintenance_until == T0 + HOUR
    (b_after,) = await connection_status(conn, "acct-b", None, T0 + 2 * HOUR)
    assert b_after.status == "pending" and not b_after.in_maintenance

    more = Log(notes=list(log.notes), versions=dict(log.versions))
    more.add(ReauthRequired(**more.envelope(A, T0), command_id="c5", provider="plaid",
                            item_id="item-1", error_code="ITEM_LOGIN_REQUIRED"))  # fmt: skip
    await apply(conn, Log(notes=more.notes[len(log.notes) :]), [ConnectionStatusProjection()])
    (a,) = await connection_status(conn, "acct-a", None, T0)
    assert a.status == "reauth_required" and a.reauth_providers == ["plaid"]
    # The same events applied again change nothing: each row knows its last event.
    await apply(conn, more, [ConnectionStatusProjection()])
    (again,) = await connection_status(conn, "acct-a", None, T0)
    assert again == a


async def test_a_refused_sync_reads_as_a_wait_not_a_failure_in_status_log_and_reliability(
    conn: asyncpg.Connection,
) -> None:
    log = status_log()  # acct-a: one success, one failure, one provider deferral
    log.deferred(A, T0 - 2 * MIN, "c5", resume_at=T0 + MIN, refused=True)
    log.deferred(A, T0 - MIN, "c5", resume_at=T0 + 2 * MIN, refused=True)
    await apply(conn, log)
    (a,) = await connection_status(conn, "acct-a", None, T0)
    # Two failures before the waits still stand; the waits add none.
    assert a.status == "waiting" and a.consecutive_failures == 2 and a.waits == 2
    assert a.waiting_until == T0 + 2 * MIN and a.waiting_reason == "all_providers_unavailable"
    (a_later,) = await connection_status(conn, "acct-a", None, T0 + 10 * MIN)
    assert a_later.status == "error"  # nothing came of the wait: the failures show again
    since = T0 - 24 * HOUR
    (stats,) = await connection_reliability(conn, "acct-a", None, since, T0)
    assert (stats.total, stats.failed, stats.deferred, stats.waited) == (3, 2, 1, 2)
    assert stats.success_rate == pytest.approx(1 / 3)
    outcomes = [r.outcome for r in await sync_log(conn, "acct-a", None, 10)]
    assert outcomes == ["waited", "waited", "deferred", "failure", "success"]
    overview = await metrics_overview(conn, since, T0)
    assert (overview.syncs.total, overview.syncs.failed, overview.syncs.waited) == (3, 2, 2)
    assert overview.connections.waiting == 1 and overview.connections.active == 0

    log.completed(A, T0, "c5")
    await apply(conn, Log(notes=log.notes[-1:]), [ConnectionStatusProjection()])
    (a,) = await connection_status(conn, "acct-a", None, T0)
    assert a.status == "active" and a.waiting_until is None and a.waits == 2


async def test_reliability_counts_syncs_calls_cost_and_failover_rates_per_period(
    conn: asyncpg.Connection,
) -> None:
    log = status_log()
    log.call(A, T0 - 50 * MIN, "plaid", "failure", command="c6", attempt=1)
    log.call(A, T0 - 50 * MIN, "mx", "success", command="c6", attempt=2, failover=True)
    log.completed(A, T0 - 50 * MIN, "c6", provider="mx", failover_used=True, attempts=2,
                  response_time_ms=500.0)  # fmt: skip
    log.completed(B, T0 - 3 * 24 * HOUR, "old", provider="mx")  # outside a 1-day period
    await apply(conn, log)
    since = T0 - 24 * HOUR
    (a,) = await connection_reliability(conn, "acct-a", None, since, T0)
    assert (a.total, a.successful, a.failed, a.deferred) == (4, 2, 2, 1)
    assert a.success_rate == 0.5
    by_provider = {r.provider: r for r in await provider_reliability(conn, since, T0, {"mx": 0.04})}
    assert by_provider["plaid"].total == 2 and by_provider["plaid"].successful == 1
    assert by_provider["mx"].avg_duration_ms == 500.0 and by_provider["mx"].calls == 1
    assert by_provider["mx"].estimated_cost == pytest.approx(0.04)
    assert by_provider["plaid"].price_per_call is None
    hours = {r.provider: r for r in await failover_rates(conn, since, T0, "US")}
    plaid_hour, mx_hour = hours["plaid"], hours["mx"]
    assert (plaid_hour.calls, plaid_hour.failovers, plaid_hour.failover_rate) == (
        1,
        1,
        1.0,
    )
    assert mx_hour.failovers == 0 and mx_hour.hour == T0 - HOUR

    overview = await metrics_overview(conn, since, T0)
    # c6 succeeded after acct-a's failures (log order): active again; acct-b in maintenance.
    assert overview.connections == ConnectionCounts(total=2, active=1, with_errors=0,
                                                    in_maintenance=1, requiring_reauth=0,
                                                    health_rate=0.5)  # fmt: skip
    assert overview.syncs.total == 4 and overview.syncs.success_rate == 0.5
    assert overview.reliability_score == 50.0  # 70% x 0.5 + 30% x 0.5


def saga_log() -> tuple[Log, dict[str, uuid.UUID]]:
    """Three sagas: one completes, one's clean-up needs attention, one aborts."""
    log = Log()
    ids = {name: uuid.UUID(int=100 + n) for n, name in enumerate(("done", "stuck", "gone"))}

    def envelope(name: str, at: datetime) -> dict[str, Any]:
        return log.envelope(ids[name], at)

    def about(name: str) -> dict[str, Any]:
        return {"command_id": f"link-{name}", "space_id": "space-1", "account_id": f"acct-{name}"}

    for name in ids:
        log.add(SagaStarted(**envelope(name, T0), kind="link", connection_id=A, **about(name)))
        log.add(
            SagaStepStarted(
                **envelope(name, T0 + MIN),
                step="create_link",
                attempt=1,
                idempotency_key=f"{name}:do:create_link",
            )
        )
    log.add(
        LinkCompleted(
            **envelope("done", T0 + 2 * MIN),
            kind="link",
            provider="plaid",
            item_id="item-1",
            **about("done"),
        )
    )
    for name in ("stuck", "gone"):
        log.add(
            SagaStepStarted(
                **envelope(name, T0 + 2 * MIN),
                step="exchange_token",
                attempt=1,
                idempotency_key=f"{name}:do:exchange_token",
            )
        )
        log.add(
            SagaCompensating(
                **envelope(name, T0 + 3 * MIN), reason="INVALID_PUBLIC_TOKEN", step="exchange_token"
            )
        )
        log.add(
            SagaCompensationStarted(
                **envelope(name, T0 + 3 * MIN),
                compensation="remove_item",
                for_step="create_link",
                attempt=1,
                idempotency_key=f"{name}:undo:remove_item",
            )
        )
    log.add(
        SagaNeedsAttention(
            **envelope("stuck", T0 + 4 * MIN),
            compensation="remove_item",
            reason="remove_item failed 6 times",
        )
    )
    log.add(
        LinkAborted(
            **envelope("gone", T0 + 5 * MIN),
            kind="link",
            step="exchange_token",
            reason="INVALID_PUBLIC_TOKEN",
            **about("gone"),
        )
    )
    return log, ids


async def saga_rows(conn: asyncpg.Connection) -> list[SagaRow]:
    return await sagas_by_status(conn, None, 10)


async def test_saga_status_lists_the_stuck_saga_until_it_is_resumed_whatever_the_paging(
    database_url: str,
) -> None:
    seen = []
    for page in (1, 1000):
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DROP TABLE IF EXISTS saga_status")
            log, ids = saga_log()
            await apply(conn, log, [SagaStatusProjection()], page=page)
            stuck = await sagas_by_status(conn, "needs_attention", 10)
            assert [(r.saga_id, r.step, r.reason) for r in stuck] == [
                (ids["stuck"], "remove_item", "remove_item failed 6 times")
            ]
            gone = await sagas_by_status(conn, "aborted", 10)
            assert [(r.step, r.reason) for r in gone] == [
                ("exchange_token", "INVALID_PUBLIC_TOKEN")
            ]
            assert await saga_counts(conn) == {
                "running": 0,
                "compensating": 0,
                "completed": 1,
                "aborted": 1,
                "needs_attention": 1,
            }

            before = len(log.notes)
            log.add(
                SagaResumed(
                    **log.envelope(ids["stuck"], T0 + HOUR),
                    compensation="remove_item",
                    command_id="resume-1",
                    note="item removed by hand",
                )
            )
            log.add(
                SagaCompensationStarted(
                    **log.envelope(ids["stuck"], T0 + HOUR),
                    compensation="remove_item",
                    for_step="create_link",
                    attempt=7,
                    idempotency_key="stuck:undo:remove_item",
                )
            )
            await apply(conn, Log(notes=log.notes[before:]), [SagaStatusProjection()], page=page)
            assert await sagas_by_status(conn, "needs_attention", 10) == []
            rows = await saga_rows(conn)
            assert rows[0].saga_id == ids["stuck"]  # the most recently moved first
            assert (rows[0].status, rows[0].step, rows[0].reason) == (
                "compensating",
                "remove_item",
                "resumed: item removed by hand",
            )
            seen.append(rows)
        finally:
            await conn.close()
    assert seen[0] == seen[1]  # a page per event or one page: the same rows


async def test_the_sagas_gauge_counts_each_status_for_alerting_on_needs_attention(
    conn: asyncpg.Connection,
) -> None:
    metrics_reader = InMemoryMetricReader()
    register_saga_gauge(MeterProvider(metric_readers=[metrics_reader]))
    projection = SagaStatusProjection()
    log, _ = saga_log()
    await apply(conn, log, [projection])

    await projection.refresh_metrics(conn)

    observed = gauge_values(metrics_reader, "syncyard.sagas", "status")
    assert observed == {
        "running": 0, "compensating": 0, "completed": 1, "aborted": 1, "needs_attention": 1,
    }  # fmt: skip

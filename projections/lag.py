"""How far each projection is behind the log: `projection_lag`, and the OpenTelemetry gauge."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
from opentelemetry import metrics

from projections.schemas import DEFAULT_EVENTS_TABLE, POSITIONS, Borrowed, use_schema
from services.ports import DbConnection

_live_lag: dict[str, int] = {}
_gauges: dict[tuple[int, str], metrics.ObservableGauge] = {}


def _observe_lag(_: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    return [metrics.Observation(behind, {"projection": name}) for name, behind in _live_lag.items()]


def register_gauge(
    name: str,
    observe: metrics.CallbackT,
    *,
    unit: str,
    description: str,
    provider: metrics.MeterProvider | None = None,
) -> metrics.ObservableGauge:
    """A gauge of the read side, once per meter provider.

    On the global meter provider by default, which stays a no-op until an SDK
    provider with an exporter is installed.
    """
    provider = provider or metrics.get_meter_provider()
    gauge = _gauges.get((id(provider), name))
    if gauge is None:
        gauge = _gauges[(id(provider), name)] = provider.get_meter(
            "syncyard.projections"
        ).create_observable_gauge(name, callbacks=[observe], unit=unit, description=description)
    return gauge


def register_lag_gauge(provider: metrics.MeterProvider | None = None) -> metrics.ObservableGauge:
    """`syncyard.projection.lag`: events each live projection is behind the log's head."""
    return register_gauge(
        "syncyard.projection.lag",
        _observe_lag,
        unit="{event}",
        description="notifications stored but not yet applied, per projection",
        provider=provider,
    )


async def projection_lag(
    pool_or_conn: asyncpg.Pool | DbConnection,
    *,
    events_table: str = DEFAULT_EVENTS_TABLE,
    schema: str | None = None,
) -> list[dict[str, Any]]:
    """Each projection's position, the log's head, how far behind it is, when it last moved.

    Safe inside a caller's transaction: a missing table (nothing stored, no
    projector run yet) is caught in a savepoint of its own.
    """
    async with Borrowed(pool_or_conn) as conn:
        try:
            async with conn.transaction():
                head = await conn.fetchval(
                    f'SELECT COALESCE(MAX(notification_id), 0) FROM "{events_table}"'  # noqa: S608
                )
        except asyncpg.UndefinedTableError:
            head = 0  # no event was ever stored
        try:
            async with conn.transaction():
                await use_schema(conn, schema)
                rows = await conn.fetch(
                    f"SELECT projection, position, updated_at FROM {POSITIONS} "  # noqa: S608
                    "ORDER BY projection"
                )
        except asyncpg.UndefinedTableError:
            return []  # no projector has run against this database yet
    return [
        {
            "projection": row["projection"],
            "position": row["position"],
            "head": head,
            "behind": max(0, head - row["position"]),
            "updated_at": row["updated_at"],
        }
        for row in rows
    ]


def record_live_lag(lags: dict[str, int]) -> None:
    """What the gauge reports next: each live projection's events behind.

    Replaced, not merged: a process runs one projector, and a projection it no
    longer runs must not go on being reported at its last value.
    """
    _live_lag.clear()
    _live_lag.update(lags)

"""Read model `saga_status`: every link and reconnect saga, where it is, and why it stopped.

`GET /v1/sagas/{id}` folds one saga from its events; this table answers the
operator's other question, "which sagas need me?", without folding them all:
one row per saga with its status, the step it is at (or the compensation it
is stuck on) and the reason. The status words are the saga state's
(`sagas/state.py`): the fold below mirrors its transitions and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal, get_args
from uuid import UUID

import msgspec
from opentelemetry import metrics

from events.saga import (
    LinkAborted,
    LinkCompleted,
    SagaCompensating,
    SagaCompensationStarted,
    SagaKind,
    SagaNeedsAttention,
    SagaResumed,
    SagaStarted,
    SagaStepStarted,
)
from projections.engine import Projection
from projections.lag import register_gauge
from projections.row_types import Time
from services.ports import DbConnection, Notification

# The saga's status words, as `sagas.state.SagaStatus` names them (projections
# may not import sagas/; tests/unit/test_saga_status.py keeps them equal).
SagaStatus = Literal["running", "compensating", "completed", "aborted", "needs_attention"]
SAGA_STATUSES: tuple[str, ...] = get_args(SagaStatus)

SCHEMA = """
CREATE TABLE IF NOT EXISTS saga_status (
    saga_id uuid PRIMARY KEY,
    kind text NOT NULL,
    command_id text NOT NULL,
    space_id text NOT NULL,
    account_id text NOT NULL,
    status text NOT NULL,
    step text,
    reason text,
    started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    last_notification_id bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS saga_status_by_status ON saga_status (status, updated_at);
"""


class SagaRow(msgspec.Struct, frozen=True, kw_only=True):
    """One link or reconnect saga: where it is, and why it stopped if it did."""

    saga_id: UUID
    kind: SagaKind
    command_id: str
    space_id: str
    account_id: str
    status: SagaStatus
    step: Annotated[
        str | None, msgspec.Meta(description="the step (or compensation) it is at, or stopped on")
    ]
    reason: Annotated[
        str | None, msgspec.Meta(description="why it is compensating, aborted or needs attention")
    ]
    started_at: Time
    updated_at: Time


class SagaCounts(msgspec.Struct, frozen=True, kw_only=True):
    """How many sagas are in each status, zeros included: one field per status word."""

    running: int
    compensating: int
    completed: int
    aborted: int
    needs_attention: int


class _Row(msgspec.Struct, kw_only=True):
    status: str | None = None
    step: str | None = None
    reason: str | None = None
    updated_at: datetime | None = None
    last_notification_id: int = 0
    # Set only when the page holds the saga's first event: the row is inserted.
    started: SagaStarted | None = None


def _fold(row: _Row, note: Notification) -> None:
    e = note.event
    if isinstance(e, SagaStarted):
        row.started, row.status = e, "running"
    elif isinstance(e, SagaStepStarted):
        row.step = e.step
    elif isinstance(e, SagaCompensating):
        row.status, row.step, row.reason = "compensating", e.step, e.reason
    elif isinstance(e, SagaCompensationStarted):
        row.step = e.compensation
    elif isinstance(e, SagaNeedsAttention):
        row.status, row.step, row.reason = "needs_attention", e.compensation, e.reason
    elif isinstance(e, SagaResumed):
        row.status, row.step, row.reason = "compensating", e.compensation, f"resumed: {e.note}"
    elif isinstance(e, LinkCompleted):
        row.status, row.reason = "completed", None
    elif isinstance(e, LinkAborted):
        row.status, row.step, row.reason = "aborted", e.step, e.reason
    row.updated_at = e.timestamp
    row.last_notification_id = note.id


_counts: dict[str, int] = {}


def _observe(_: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    return [metrics.Observation(n, {"status": status}) for status, n in _counts.items()]


def register_saga_gauge(provider: metrics.MeterProvider | None = None) -> metrics.ObservableGauge:
    """`syncyard.sagas`: how many sagas are in each status; alert on `needs_attention` > 0.

    Fed by the live projector, about once a second (`refresh_metrics`).
    """
    return register_gauge(
        "syncyard.sagas",
        _observe,
        unit="{saga}",
        description="link and reconnect sagas per status",
        provider=provider,
    )


class SagaStatusProjection(Projection):
    name = "saga_status"
    schema = SCHEMA
    tables = ("saga_status",)
    handles = (
        SagaStarted,
        SagaStepStarted,
        SagaCompensating,
        SagaCompensationStarted,
        SagaNeedsAttention,
        SagaResumed,
        LinkCompleted,
        LinkAborted,
    )

    def __init__(self) -> None:
        register_saga_gauge()

    async def refresh_metrics(self, conn: DbConnection) -> None:
        _counts.update(await saga_counts(conn))

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        rows: dict[UUID, _Row] = {}
        for note in notes:
            _fold(rows.setdefault(note.originator_id, _Row()), note)
        new = [(saga_id, row) for saga_id, row in rows.items() if row.started is not None]
        moved = [(saga_id, row) for saga_id, row in rows.items() if row.started is None]
        if new:
            await conn.executemany(
                "INSERT INTO saga_status VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                [
                    (saga_id, s.kind, s.command_id, s.space_id, s.account_id, row.status,
                     row.step, row.reason, s.timestamp, row.updated_at, row.last_notification_id)
                    for saga_id, row in new
                    if (s := row.started) is not None
                ],
            )  # fmt: skip
        if moved:
            # A page that did not touch a column keeps it: status and step come
            # with the events that set them; reason is cleared by the ones that do.
            await conn.executemany(
                "UPDATE saga_status SET status = COALESCE($2, status), "
                "step = COALESCE($3, step), reason = CASE WHEN $2 IS NULL THEN reason ELSE $4 END, "
                "updated_at = $5, last_notification_id = $6 WHERE saga_id = $1",
                [
                    (saga_id, row.status, row.step, row.reason, row.updated_at,
                     row.last_notification_id)
                    for saga_id, row in moved
                ],
            )  # fmt: skip


async def sagas_by_status(conn: DbConnection, status: str | None, limit: int) -> list[SagaRow]:
    """Sagas (of one status, or all), the most recently moved first."""
    rows = await conn.fetch(
        "SELECT saga_id, kind, command_id, space_id, account_id, status, step, reason, "
        "started_at, updated_at FROM saga_status "
        "WHERE $1::text IS NULL OR status = $1 ORDER BY updated_at DESC, saga_id LIMIT $2",
        status,
        limit,
    )
    return [SagaRow(**row) for row in rows]


async def saga_counts(conn: DbConnection) -> dict[str, int]:
    """How many sagas are in each status (every status named, zeros included)."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM saga_status GROUP BY status")
    counts = dict.fromkeys(SAGA_STATUSES, 0)
    counts.update({row["status"]: int(row["n"]) for row in rows})
    return counts

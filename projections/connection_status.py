"""Read model `connection_status`: where each connection stands.

Stored facts only (last success, consecutive failures, maintenance, links
needing re-authentication, next retry, a wait); the status word is derived at query
time from those facts and the query moment, because "in maintenance until
10:30" means something different at 10:29 and at 10:31.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatch
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from events.base import DomainEvent
from events.connection import (
    ConnectionRegistered,
    LoginRepaired,
    MaintenanceDetected,
    ProviderLinked,
    ProviderUnlinked,
    ReauthRequired,
    RelinkSuggested,
    SyncCompleted,
    SyncDeferred,
    SyncFailed,
)
from projections.attempt_types import attempt_type
from projections.engine import Projection
from projections.row_types import Time
from services.ports import DbConnection, Notification

ConnectionStatus = Literal[
    "pending", "active", "error", "retrying", "waiting", "maintenance", "reauth_required"
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS connection_status (
    connection_id uuid PRIMARY KEY,
    last_event bigint NOT NULL,
    space_id text,
    account_id text,
    institution_id text,
    region text,
    providers text[] NOT NULL,
    last_success_at timestamptz,
    last_successful_sync_at timestamptz,
    last_failure_at timestamptz,
    consecutive_failures int NOT NULL,
    last_error_code text,
    last_error_message text,
    maintenance_provider text,
    maintenance_since timestamptz,
    maintenance_until timestamptz,
    reauth_providers text[] NOT NULL,
    next_retry_at timestamptz,
    relink_failing_provider text,
    relink_suggested_provider text,
    relink_down_since timestamptz,
    waiting_until timestamptz,
    waiting_reason text,
    waits int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS connection_status_by_account ON connection_status (account_id);
"""


@dataclass
class _State:
    connection_id: UUID
    last_event: int = 0
    space_id: str | None = None
    account_id: str | None = None
    institution_id: str | None = None
    region: str | None = None
    providers: list[str] = dataclasses.field(default_factory=list)
    last_success_at: datetime | None = None
    last_successful_sync_at: datetime | None = None
    last_failure_at: datetime | None = None
    consecutive_failures: int = 0
    last_error_code: str | None = None
    last_error_message: str | None = None
    maintenance_provider: str | None = None
    maintenance_since: datetime | None = None
    maintenance_until: datetime | None = None
    reauth_providers: list[str] = dataclasses.field(default_factory=list)
    next_retry_at: datetime | None = None
    relink_failing_provider: str | None = None
    relink_suggested_provider: str | None = None
    relink_down_since: datetime | None = None
    waiting_until: datetime | None = None
    waiting_reason: str | None = None
    waits: int = 0
    updated_at: datetime | None = None


_COLUMNS = [f.name for f in dataclasses.fields(_State)]
_SELECT = (
    f"SELECT {', '.join(_COLUMNS)} FROM connection_status "  # noqa: S608 - our column names
    "WHERE connection_id = ANY($1::uuid[])"
)
_row_of = operator.attrgetter(*_COLUMNS)
_UPSERT = (
    f"INSERT INTO connection_status ({', '.join(_COLUMNS)}) "  # noqa: S608 - our column names
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))}) "
    "ON CONFLICT (connection_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])
)


def evolve(state: _State, note: Notification) -> None:
    """Apply one event; an event at or before `last_event` was applied already."""
    if note.id > state.last_event:
        state.last_event, state.updated_at = note.id, note.event.timestamp
        _apply(note.event, state)


@singledispatch
def _apply(event: DomainEvent, state: _State) -> None:
    """Events this read model does not need change nothing but `last_event`."""


@_apply.register
def _(e: ConnectionRegistered, state: _State) -> None:
    state.space_id, state.account_id = e.space_id, e.account_id
    state.institution_id, state.region = e.institution_id, e.region


@_apply.register
def _(e: ProviderLinked, state: _State) -> None:
    # A fresh (or update-mode) link is a clean slate for that provider.
    state.providers = sorted({*state.providers, e.provider})
    state.reauth_providers = [p for p in state.reauth_providers if p != e.provider]
    _clear_relink(state)


@_apply.register
def _(e: ProviderUnlinked, state: _State) -> None:
    state.providers = [p for p in state.providers if p != e.provider]
    state.reauth_providers = [p for p in state.reauth_providers if p != e.provider]


@_apply.register
def _(e: SyncCompleted, state: _State) -> None:
    state.last_success_at, state.consecutive_failures, state.next_retry_at = e.timestamp, 0, None
    _stop_waiting(state)
    if attempt_type(e.op) == "sync":
        state.last_successful_sync_at = e.timestamp
    if e.provider == state.maintenance_provider:
        state.maintenance_provider = state.maintenance_since = state.maintenance_until = None
    if e.provider == state.relink_failing_provider:
        _clear_relink(state)


@_apply.register(SyncFailed)
@_apply.register(SyncDeferred)
def _(e: SyncFailed | SyncDeferred, state: _State) -> None:
    if isinstance(e, SyncDeferred) and e.refused:
        # Refused before any call (a breaker open, a limit, a full bulkhead): the
        # sync waits, nothing failed, and the failures before it still stand.
        state.waiting_until, state.waiting_reason = e.resume_at, e.error.code
        state.waits += 1
        return
    _stop_waiting(state)
    state.consecutive_failures += 1
    state.last_failure_at = e.timestamp
    state.last_error_code, state.last_error_message = e.error.code, e.error.message
    state.next_retry_at = e.resume_at if isinstance(e, SyncDeferred) else None


def _stop_waiting(state: _State) -> None:
    """A call was made: whatever refused the sync let it through."""
    state.waiting_until = state.waiting_reason = None


@_apply.register
def _(e: MaintenanceDetected, state: _State) -> None:
    if state.maintenance_provider != e.provider:
        state.maintenance_since = e.timestamp
    state.maintenance_provider, state.maintenance_until = e.provider, e.until


@_apply.register
def _(e: ReauthRequired, state: _State) -> None:
    state.reauth_providers = sorted({*state.reauth_providers, e.provider})


@_apply.register
def _(e: LoginRepaired, state: _State) -> None:
    state.reauth_providers = [p for p in state.reauth_providers if p != e.provider]


@_apply.register
def _(e: RelinkSuggested, state: _State) -> None:
    state.relink_failing_provider = e.failing_provider
    state.relink_suggested_provider = e.suggested_provider
    state.relink_down_since = e.down_since


def _clear_relink(state: _State) -> None:
    state.relink_failing_provider = state.relink_suggested_provider = None
    state.relink_down_since = None


class ConnectionStatusProjection(Projection):
    name = "connection_status"
    schema = SCHEMA
    tables = ("connection_status",)
    version = 2  # 2: refused deferrals are waits (waiting_until, waiting_reason, waits)
    handles = (
        ConnectionRegistered,
        ProviderLinked,
        ProviderUnlinked,
        SyncCompleted,
        SyncFailed,
        SyncDeferred,
        MaintenanceDetected,
        ReauthRequired,
        LoginRepaired,
        RelinkSuggested,
    )

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        ids = list({n.originator_id for n in notes})
        rows = await conn.fetch(_SELECT, ids)
        # Positional: the columns come in _State's order (a row's dict as keywords
        # was a tenth of the projector's samples).
        states = {row[0]: _State(*row) for row in rows}
        for note in notes:
            state = states.get(note.originator_id)
            if state is None:  # not setdefault: that would build a state per event
                state = states[note.originator_id] = _State(note.originator_id)
            evolve(state, note)
        await conn.executemany(_UPSERT, [_row_of(s) for s in states.values()])


class ConnectionStatusRow(msgspec.Struct, frozen=True, kw_only=True):
    """Where one connection of the account stands at the query moment."""

    connection_id: UUID
    space_id: str
    account_id: str
    institution_id: str | None
    region: str
    providers: list[str]
    last_success_at: Time | None
    last_successful_sync_at: Time | None
    last_failure_at: Time | None
    consecutive_failures: int
    last_error_code: str | None
    last_error_message: str | None
    maintenance_provider: str | None
    maintenance_since: Time | None
    maintenance_until: Time | None
    reauth_providers: list[str]
    next_retry_at: Time | None
    relink_failing_provider: str | None
    relink_suggested_provider: str | None
    relink_down_since: Time | None
    waiting_until: Annotated[
        Time | None, msgspec.Meta(description="a refused sync waits until then (no try spent)")
    ]
    waiting_reason: Annotated[
        str | None, msgspec.Meta(description="the refusal's code, e.g. all_providers_unavailable")
    ]
    waits: Annotated[int, msgspec.Meta(description="refusals so far, all syncs together")]
    updated_at: Time
    status: ConnectionStatus
    in_maintenance: bool
    requires_reauth: bool


def status_at(row: Any, now: datetime) -> ConnectionStatus:
    """The status word at `now`: re-authentication, maintenance, a wait, failures, success.

    `waiting`: a sync was refused without a call and runs again at
    `waiting_until`; it is not failing, so it does not read as `retrying`.
    """
    if row["reauth_providers"]:
        return "reauth_required"
    until = row["maintenance_until"]
    if row["maintenance_provider"] is not None and (until is None or until > now):
        return "maintenance"
    waiting_until = row["waiting_until"]
    if waiting_until is not None and waiting_until > now:
        return "waiting"
    if row["consecutive_failures"] > 0:
        retry = row["next_retry_at"]
        return "retrying" if retry is not None and retry > now else "error"
    return "active" if row["last_success_at"] is not None else "pending"


def present(row: Any, now: datetime) -> ConnectionStatusRow:
    """A stored row as the API shows it at `now`."""
    stored = {k: v for k, v in dict(row).items() if k != "last_event"}
    until = row["maintenance_until"]
    in_maintenance = row["maintenance_provider"] is not None and (until is None or until > now)
    return ConnectionStatusRow(
        **stored,
        status=status_at(row, now),
        in_maintenance=in_maintenance,
        requires_reauth=bool(row["reauth_providers"]),
    )


async def connection_status(
    conn: DbConnection, account_id: str, space_id: str | None, now: datetime
) -> list[ConnectionStatusRow]:
    rows = await conn.fetch(
        "SELECT * FROM connection_status WHERE account_id = $1 "
        "AND ($2::text IS NULL OR space_id = $2) ORDER BY space_id",
        account_id,
        space_id,
    )
    return [present(row, now) for row in rows]


_USING = """
SELECT DISTINCT institution_id, region FROM connection_status
WHERE institution_id IS NOT NULL AND $1 = ANY(providers)
ORDER BY institution_id, region
"""


async def institutions_using(conn: DbConnection, provider: str) -> list[tuple[str, str]]:
    """The banks (syncyard's ids) and regions of connections holding a link at `provider`."""
    return [(r["institution_id"], r["region"]) for r in await conn.fetch(_USING, provider)]

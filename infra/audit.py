"""Audits: an aggregate's events, and its state as it stood at a past time.

The state is folded from the aggregate's own events with the domain's own
`evolve` (the code the live system folds with), taking the stream in version
order up to the last event stamped at or before the time asked for.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec

from events.base import DomainEvent
from services.connections.domain import ConnectionState, connection_id_for, fold
from services.ports import DbConnection, LogReader, Notification
from services.resilience.domain import Breaker, evolve, new_breaker

S = TypeVar("S")
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "metadata"})
_SECRET_MARKERS = ("token", "secret", "password", "credential_key")


class UnknownAggregateError(LookupError):
    """No event was ever stored for the aggregate asked about."""


class Audit(msgspec.Struct, Generic[S], frozen=True, kw_only=True):
    """What an audit found: the events up to the time, the state they make, what came later."""

    aggregate_id: uuid.UUID
    at: datetime | None
    events: list[Notification]
    state: S
    later: int  # events stored after `at`, not folded


def parse_time(text: str) -> datetime:
    """ISO 8601 (`2026-11-23T10:32:00Z`, `2026-11-23 10:32`); no zone means UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: use ISO 8601, e.g. 2026-11-23T10:32:00Z"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def connection_ref(text: str) -> uuid.UUID:
    """A connection's id from its UUID, or from `SPACE_ID/ACCOUNT_ID` (which derive it)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    space_id, slash, account_id = text.partition("/")
    if not (slash and space_id and account_id):
        raise ValueError(f"{text!r} is neither a connection UUID nor SPACE_ID/ACCOUNT_ID")
    return connection_id_for(space_id, account_id)


def describe(event: DomainEvent) -> dict[str, Any]:
    """An event's own fields for a timeline: nested values summarised, secrets never shown."""
    fields: dict[str, Any] = {}
    for key, value in msgspec.to_builtins(event).items():
        if key in _ENVELOPE:
            continue
        if any(marker in key.lower() for marker in _SECRET_MARKERS):
            fields[key] = "***"
        elif key == "ranking" and isinstance(value, dict):
            fields[key] = ranking_line(value)
        elif isinstance(value, list):
            fields[key] = f"[{len(value)} items]"
        elif isinstance(value, dict) and key != "error":
            fields[key] = f"{{{len(value)} keys}}"
        else:
            fields[key] = value
    return fields


def ranking_line(ranking: dict[str, Any]) -> str:
    """A decision's provider order with the live scores it compared, as one line:
    `mx:100 > plaid:0 (directory plaid, mx; margin 15)`."""
    scores = ranking.get("scores", {})
    order = " > ".join(f"{p}:{scores.get(p, '?')}" for p in ranking.get("order", ()))
    directory = ", ".join(ranking.get("directory", ()))
    return f"{order} (directory {directory}; margin {ranking.get('margin')})"


async def _audit(
    conn: DbConnection,
    reader: LogReader,
    aggregate_id: uuid.UUID,
    at: datetime | None,
    *,
    fold_events: Callable[[list[DomainEvent]], S],
    label: str,
) -> Audit[S]:
    stream = await reader.read_stream(conn, aggregate_id)
    if not stream:
        raise UnknownAggregateError(f"no {label} {aggregate_id}: no event was ever stored for it")
    upto = (
        stream
        if at is None
        else list(itertools.takewhile(lambda n: n.event.timestamp <= at, stream))
    )
    return Audit(
        aggregate_id=aggregate_id,
        at=at,
        events=upto,
        state=fold_events([n.event for n in upto]),
        later=len(stream) - len(upto),
    )


async def connection_as_of(
    conn: DbConnection, reader: LogReader, ref: str, at: datetime | None = None
) -> Audit[ConnectionState | None]:
    """A connection's timeline and state at `at` (None: now); `ref` as `connection_ref` takes."""
    return await _audit(
        conn,
        reader,
        connection_ref(ref),
        at,
        fold_events=lambda events: fold(None, events),
        label="connection",
    )


async def breaker_as_of(
    conn: DbConnection,
    reader: LogReader,
    provider: str,
    region: str,
    at: datetime | None = None,
) -> Audit[Breaker]:
    """A provider breaker's transitions and state at `at` (None: now)."""
    initial = new_breaker(provider, region)

    def fold_breaker(events: list[DomainEvent]) -> Breaker:
        breaker = initial
        for event in events:
            breaker = evolve(breaker, event)
        return breaker

    try:
        return await _audit(conn, reader, initial.id, at, fold_events=fold_breaker, label="breaker")
    except UnknownAggregateError:
        raise UnknownAggregateError(
            f"no breaker events for provider {provider!r} in region {region!r}: it never "
            "changed state (it is closed), or the provider or region is misspelled"
        ) from None

"""How each event of the `Connection` aggregate changes its state."""

from __future__ import annotations

from collections.abc import Iterable
from functools import singledispatch
from typing import TypeVar

import msgspec

from events.base import DomainEvent
from events.commands import RegisterConnection
from events.connection import (
    ConnectionAttempted,
    ConnectionRegistered,
    ConsentExpiring,
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
from events.feed import FeedAppended
from events.results import CommandResult
from services.connections.link_health import OUTAGE_TYPES
from services.connections.state import (
    RECENT_COMMANDS_KEPT,
    ConnectionState,
    ConsentNotice,
    Deferral,
    Link,
)


def _remember(state: ConnectionState, result: CommandResult) -> dict[str, CommandResult]:
    recent = dict(state.recent_results)
    recent[result.command_id] = result
    while len(recent) > RECENT_COMMANDS_KEPT:
        del recent[next(iter(recent))]
    return recent


@singledispatch
def _apply(event: DomainEvent, state: ConnectionState | None) -> ConnectionState:
    # Events this version does not know (written by a newer one) change nothing
    # it relies on; the version still moves so the next append does not collide.
    assert state is not None, f"{type(event).__name__} cannot start a connection"
    return msgspec.structs.replace(state, version=event.originator_version)


@_apply.register
def _(event: ConnectionRegistered, state: ConnectionState | None) -> ConnectionState:
    return ConnectionState(
        id=event.originator_id,
        version=event.originator_version,
        space_id=event.space_id,
        account_id=event.account_id,
        institution_id=event.institution_id,
        region=event.region,
    )


@_apply.register
def _(event: ProviderLinked, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    links = dict(state.links)
    links[event.provider] = Link(
        provider=event.provider, item_id=event.item_id, credential_id=event.credential_id
    )
    result = CommandResult(
        command_id=event.command_id,
        op=RegisterConnection.op,
        success=True,
        provider=event.provider,
        data={"connection_id": str(state.id), "providers": sorted(links)},
    )
    # A fresh link (or an update-mode relink) is a clean slate for that provider,
    # and answers any standing suggestion to link elsewhere. A cursor belongs to
    # one item: a new item at the provider starts its history from the beginning.
    earlier = state.links.get(event.provider)
    same_item = earlier is not None and earlier.item_id == event.item_id
    cursors = state.cursors if same_item else _without(state.cursors, event.provider)
    held = state.held if same_item else _without(state.held, event.provider)
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        links=links,
        cursors=cursors,
        held=held,
        recent_results=_remember(state, result),
        reauth=state.reauth - {event.provider},
        # Not a repair itself: `connection.register` may bring an item whose login is
        # already lost. A repair of the item replaced is none of the new one.
        login_repaired_at=(
            state.login_repaired_at
            if same_item
            else _without(state.login_repaired_at, event.provider)
        ),
        maintenance_until=_without(state.maintenance_until, event.provider),
        down_since=_without(state.down_since, event.provider),
        relink_suggested=frozenset(),
        # Linked afresh (update mode included): the person consented again.
        consent_expiring=_without(state.consent_expiring, event.provider),
    )


@_apply.register
def _(event: SyncCompleted, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    result = CommandResult(
        command_id=event.command_id,
        op=event.op,
        success=True,
        provider=event.provider,
        failover_used=event.failover_used,
        response_time_ms=event.response_time_ms,
        attempts=event.attempts,
        data={"summary": event.summary},
    )
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        recent_results=_remember(state, result),
        deferred=_settled(state, event.command_id),
    )


@_apply.register
def _(event: FeedAppended, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    position = event.entries[-1].position if event.entries else state.feed_position
    # What the walk held replaces what the link's last walk held (it planned those again).
    held = _without(state.held, event.provider)
    if event.held:
        held[event.provider] = event.held
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        cursors={**state.cursors, event.provider: event.cursor},
        held=held,
        feed_position=position,
    )


@_apply.register
def _(event: SyncFailed, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    result = CommandResult(
        command_id=event.command_id,
        op=event.op,
        success=False,
        provider=event.provider,
        failover_used=event.failover_used,
        response_time_ms=event.response_time_ms,
        attempts=event.attempts,
        error=event.error,
    )
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        recent_results=_remember(state, result),
        deferred=_settled(state, event.command_id),
    )


@_apply.register
def _(event: SyncDeferred, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    deferred = dict(state.deferred)
    earlier = state.deferred.get(event.command_id)
    deferred[event.command_id] = Deferral(
        tries=event.tries,
        waits=event.waits,
        received_at=(
            event.received_at or (earlier.received_at if earlier else None) or event.timestamp
        ),
        resume_at=event.resume_at,
        result=CommandResult(
            command_id=event.command_id,
            op=event.op,
            success=False,
            error=event.error,
            deferred_until=event.resume_at,
        ),
    )
    return msgspec.structs.replace(state, version=event.originator_version, deferred=deferred)


@_apply.register
def _(event: ConnectionAttempted, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    provider = event.provider
    if event.outcome == "success":
        if not (
            provider in state.down_since
            or provider in state.maintenance_until
            or provider in state.reauth
            or provider in state.relink_suggested
        ):
            return msgspec.structs.replace(state, version=event.originator_version)
        return msgspec.structs.replace(
            state,
            version=event.originator_version,
            down_since=_without(state.down_since, provider),
            maintenance_until=_without(state.maintenance_until, provider),
            reauth=state.reauth - {provider},
            relink_suggested=state.relink_suggested - {provider},
        )
    if (event.error_type or "unknown") in OUTAGE_TYPES and provider not in state.down_since:
        return msgspec.structs.replace(
            state,
            version=event.originator_version,
            down_since={**state.down_since, provider: event.timestamp},
        )
    return msgspec.structs.replace(state, version=event.originator_version)


@_apply.register
def _(event: ReauthRequired, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    return msgspec.structs.replace(
        state, version=event.originator_version, reauth=state.reauth | {event.provider}
    )


@_apply.register
def _(event: MaintenanceDetected, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    if event.until is None:
        return msgspec.structs.replace(state, version=event.originator_version)
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        maintenance_until={**state.maintenance_until, event.provider: event.until},
    )


@_apply.register
def _(event: RelinkSuggested, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        relink_suggested=state.relink_suggested | {event.failing_provider},
    )


@_apply.register
def _(event: ProviderUnlinked, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    link = state.links.get(event.provider)
    if link is None or link.item_id != event.item_id:
        return msgspec.structs.replace(state, version=event.originator_version)
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        links=_without(state.links, event.provider),
        reauth=state.reauth - {event.provider},
        login_repaired_at=_without(state.login_repaired_at, event.provider),
        cursors=_without(state.cursors, event.provider),
        held=_without(state.held, event.provider),
        consent_expiring=_without(state.consent_expiring, event.provider),
    )


@_apply.register
def _(event: ConsentExpiring, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    notice = ConsentNotice(item_id=event.item_id, code=event.code, expires_at=event.expires_at)
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        consent_expiring={**state.consent_expiring, event.provider: notice},
    )


@_apply.register
def _(event: LoginRepaired, state: ConnectionState | None) -> ConnectionState:
    assert state is not None
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        reauth=state.reauth - {event.provider},
        login_repaired_at={**state.login_repaired_at, event.provider: event.timestamp},
    )


T = TypeVar("T")


def _without(mapping: dict[str, T], key: str) -> dict[str, T]:
    return {k: v for k, v in mapping.items() if k != key}


def _settled(state: ConnectionState, command_id: str) -> dict[str, Deferral]:
    if command_id not in state.deferred:
        return state.deferred
    return {k: v for k, v in state.deferred.items() if k != command_id}


def evolve(state: ConnectionState | None, event: DomainEvent) -> ConnectionState:
    return _apply(event, state)


def fold(state: ConnectionState | None, events: Iterable[DomainEvent]) -> ConnectionState | None:
    for event in events:
        state = evolve(state, event)
    return state

"""The `Connection` aggregate: pure decisions and state evolution, no I/O.

`decide_*` functions take the current state (None for a connection not seen
before), the command and injected facts (time, ids, the orchestrator's
outcome) and return the events to record. `evolve` folds one event into the
state. Idempotency lives here: a command id already applied decides nothing.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import singledispatch
from typing import Any

import msgspec

from events.base import DomainEvent
from events.commands import Command, RegisterConnection
from events.connection import (
    AttemptOutcome,
    ConnectionAttempted,
    ConnectionRegistered,
    ProviderFailed,
    ProviderLinked,
    SyncCompleted,
    SyncDeferred,
    SyncFailed,
)
from events.errors import ErrorInfo
from events.results import CommandResult

# Enough to recognise any redelivery JetStream could still make (its
# duplicate window and max deliveries are far shorter than 512 commands).
RECENT_COMMANDS_KEPT = 512
_NAMESPACE = uuid.UUID("5d3c2f7e-4a51-4be4-9a43-6f1c1a0b9e21")


@functools.lru_cache(maxsize=65536)
def connection_id_for(space_id: str, account_id: str) -> uuid.UUID:
    """One connection per account within a space, addressable without a lookup."""
    return uuid.uuid5(_NAMESPACE, f"connection/{space_id}/{account_id}")


def credential_id_for(command_id: str) -> uuid.UUID:
    """Deterministic, so a retried registration cannot store a second credential."""
    return uuid.uuid5(_NAMESPACE, f"credential/{command_id}")


class Link(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    item_id: str
    credential_id: uuid.UUID


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One provider call made by the orchestrator, as the aggregate records it."""

    provider: str
    failover: bool
    response_time_ms: float
    error: ErrorInfo | None = None
    timed_out: bool = False
    retry_after_s: float | None = None


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What `execute_with_failover` concluded for one command."""

    success: bool
    provider: str | None
    failover_used: bool
    attempts: tuple[Attempt, ...]
    response_time_ms: float
    data: dict[str, Any] | None = None
    summary: dict[str, Any] = {}
    error: ErrorInfo | None = None
    skipped: tuple[str, ...] = ()  # providers not called, with why (e.g. breaker open)
    retry_after_s: float | None = None  # the provider's own word on when to come back


class Deferral(msgspec.Struct, frozen=True, kw_only=True):
    tries: int
    resume_at: datetime
    result: CommandResult


class ConnectionState(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    version: int
    space_id: str
    account_id: str
    institution_id: str | None
    region: str
    links: dict[str, Link] = {}
    # command id → the result it produced (without data), to answer redeliveries.
    recent_results: dict[str, CommandResult] = {}
    # command id → its pending deferral; gone once the command completes or fails.
    deferred: dict[str, Deferral] = {}

    def tries_made(self, command_id: str) -> int:
        deferral = self.deferred.get(command_id)
        return deferral.tries if deferral else 0

    def link_order(self) -> list[Link]:
        return list(self.links.values())


def _next(state: ConnectionState | None, offset: int) -> int:
    return (state.version if state else 0) + offset


def decide_register(
    state: ConnectionState | None, cmd: RegisterConnection, *, now: datetime, trace: dict[str, str]
) -> list[DomainEvent]:
    if state is not None and cmd.command_id in state.recent_results:
        return []
    cid = connection_id_for(cmd.space_id, cmd.account_id)
    meta = {**trace, "command_id": cmd.command_id}
    events: list[DomainEvent] = []
    if state is None:
        events.append(
            ConnectionRegistered(
                originator_id=cid,
                originator_version=1,
                timestamp=now,
                metadata=meta,
                space_id=cmd.space_id,
                account_id=cmd.account_id,
                institution_id=cmd.institution_id,
                region=cmd.region,
            )
        )
    events.append(
        ProviderLinked(
            originator_id=cid,
            originator_version=_next(state, len(events) + 1),
            timestamp=now,
            metadata=meta,
            command_id=cmd.command_id,
            provider=cmd.provider,
            item_id=cmd.item_id,
            credential_id=credential_id_for(cmd.command_id),
        )
    )
    return events


def decide_outcome(
    state: ConnectionState,
    cmd: Command,
    outcome: Outcome,
    *,
    now: datetime,
    trace: dict[str, str],
    resume_at: datetime | None = None,
    tries_before: int = 0,
) -> list[DomainEvent]:
    """Record every attempt, every provider failure and the command's end.

    A failure with `resume_at` is not an end: it is recorded as SyncDeferred.
    `tries_before` is how many tries the caller saw recorded when it started:
    if another delivery recorded this try meanwhile, this one decides nothing.
    """
    if cmd.command_id in state.recent_results:
        return []
    if state.tries_made(cmd.command_id) != tries_before:
        return []
    meta = {**trace, "command_id": cmd.command_id}
    events: list[DomainEvent] = []

    def version() -> int:
        return state.version + len(events) + 1

    for number, attempt in enumerate(outcome.attempts, start=1):
        status: AttemptOutcome
        if attempt.error is None:
            status = "success"
        else:
            status = "timeout" if attempt.timed_out else "failure"
        events.append(
            ConnectionAttempted(
                originator_id=state.id,
                originator_version=version(),
                timestamp=now,
                metadata=meta,
                command_id=cmd.command_id,
                op=cmd.op,
                provider=attempt.provider,
                region=state.region,
                attempt=number,
                failover=attempt.failover,
                outcome=status,
                response_time_ms=attempt.response_time_ms,
                error_code=attempt.error.code if attempt.error else None,
                error_message=attempt.error.message if attempt.error else None,
                error_type=attempt.error.type if attempt.error else None,
            )
        )
        if attempt.error is not None:
            events.append(
                ProviderFailed(
                    originator_id=state.id,
                    originator_version=version(),
                    timestamp=now,
                    metadata=meta,
                    command_id=cmd.command_id,
                    op=cmd.op,
                    provider=attempt.provider,
                    region=state.region,
                    error=attempt.error,
                    response_time_ms=attempt.response_time_ms,
                )
            )
    if outcome.success and outcome.provider is not None:
        events.append(
            SyncCompleted(
                originator_id=state.id,
                originator_version=version(),
                timestamp=now,
                metadata=meta,
                command_id=cmd.command_id,
                op=cmd.op,
                provider=outcome.provider,
                failover_used=outcome.failover_used,
                attempts=len(outcome.attempts),
                response_time_ms=outcome.response_time_ms,
                summary=outcome.summary,
            )
        )
    else:
        error = outcome.error or ErrorInfo(
            code="no_outcome", message="no provider answered", type="unknown", retryable=True
        )
        if resume_at is not None:
            events.append(
                SyncDeferred(
                    originator_id=state.id,
                    originator_version=version(),
                    timestamp=now,
                    metadata=meta,
                    command_id=cmd.command_id,
                    op=cmd.op,
                    tries=state.tries_made(cmd.command_id) + 1,
                    resume_at=resume_at,
                    error=error,
                    command=msgspec.to_builtins(cmd),
                )
            )
            return events
        events.append(
            SyncFailed(
                originator_id=state.id,
                originator_version=version(),
                timestamp=now,
                metadata=meta,
                command_id=cmd.command_id,
                op=cmd.op,
                provider=outcome.provider,
                failover_used=outcome.failover_used,
                attempts=len(outcome.attempts),
                response_time_ms=outcome.response_time_ms,
                error=error,
            )
        )
    return events


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
    return msgspec.structs.replace(
        state,
        version=event.originator_version,
        links=links,
        recent_results=_remember(state, result),
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
    deferred[event.command_id] = Deferral(
        tries=event.tries,
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


def result_for(outcome: Outcome, cmd: Command) -> CommandResult:
    return CommandResult(
        command_id=cmd.command_id,
        op=cmd.op,
        success=outcome.success,
        data=outcome.data,
        provider=outcome.provider,
        failover_used=outcome.failover_used,
        error=outcome.error,
        response_time_ms=outcome.response_time_ms,
        attempts=len(outcome.attempts),
    )


def as_duplicate(result: CommandResult) -> CommandResult:
    return msgspec.structs.replace(result, duplicate=True)

"""The `Connection` aggregate: pure decisions, no I/O.

`decide_*` functions take the current state (None for a connection not seen
before), the command and injected facts (time, ids, the orchestrator's
outcome) and return the events to record. `evolve` folds one event into the
state. Idempotency lives here: a command id already applied decides nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

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
from events.errors import ErrorInfo, blame_of
from events.feed import FeedAppended, FeedEntry, Recognition
from events.results import CommandResult
from services.connections.evolve import evolve, fold
from services.connections.link_health import RelinkPolicy, link_health_events
from services.connections.state import (
    RECENT_COMMANDS_KEPT,
    Attempt,
    ConnectionState,
    Deferral,
    FeedDraft,
    Link,
    Outcome,
    connection_id_for,
    credential_id_for,
)

DEFAULT_RELINK = RelinkPolicy()

__all__ = [
    "RECENT_COMMANDS_KEPT",
    "Attempt",
    "ConnectionState",
    "Deferral",
    "Link",
    "Outcome",
    "as_duplicate",
    "connection_id_for",
    "credential_id_for",
    "decide_open",
    "decide_outcome",
    "decide_register",
    "evolve",
    "fold",
    "result_for",
]


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
    credential_id = credential_id_for(cmd.space_id, cmd.command_id)
    # A new token for a provider the connection is linked at replaces the link:
    # the event says which one, and the store forgets (and shreds) its credential.
    earlier = state.links.get(cmd.provider) if state is not None else None
    replaced = earlier if earlier is not None and earlier.credential_id != credential_id else None
    events.append(
        ProviderLinked(
            originator_id=cid,
            originator_version=_next(state, len(events) + 1),
            timestamp=now,
            metadata=meta,
            command_id=cmd.command_id,
            provider=cmd.provider,
            item_id=cmd.item_id,
            credential_id=credential_id,
            replaces_credential_id=replaced.credential_id if replaced else None,
            replaces_item_id=replaced.item_id if replaced else None,
        )
    )
    return events


def decide_open(
    state: ConnectionState | None, cmd: Command, *, now: datetime, trace: dict[str, str]
) -> list[DomainEvent]:
    """A connection for an account seen for the first time by a command that links it."""
    if state is not None:
        return []
    return [
        ConnectionRegistered(
            originator_id=connection_id_for(cmd.space_id, cmd.account_id),
            originator_version=1,
            timestamp=now,
            metadata={**trace, "command_id": cmd.command_id},
            space_id=cmd.space_id,
            account_id=cmd.account_id,
            institution_id=cmd.institution_id,
            region=cmd.region,
        )
    ]


def decide_outcome(
    state: ConnectionState,
    cmd: Command,
    outcome: Outcome,
    *,
    now: datetime,
    trace: dict[str, str],
    resume_at: datetime | None = None,
    tries_before: int = 0,
    waits_before: int = 0,
    refused: bool = False,
    received_at: datetime | None = None,
    gave_up: str | None = None,
    relink: RelinkPolicy = DEFAULT_RELINK,
    feed: FeedDraft | None = None,
) -> list[DomainEvent]:
    """Record every attempt, every provider failure and the command's end.

    A failure with `resume_at` is not an end: it is recorded as SyncDeferred,
    `refused` when no provider was called (then it spends no try, only a wait).
    `tries_before` and `waits_before` are the tries and waits the caller saw
    recorded when it started: if another delivery recorded this round
    meanwhile, this one decides nothing. `received_at` is the command's first
    receipt. A command that ends on an error time could have fixed (`gave_up`:
    its maximum age or its tries) also gets a RelinkSuggested for the failing
    link, unless one was suggested already: waiting longer will not help.
    A sync's `feed` was planned against the feed at its `base_position`: if
    another sync of the account appended meanwhile, this one decides nothing
    (it is planned again on the new feed).
    """
    if cmd.command_id in state.recent_results:
        return []
    rounds = (state.tries_made(cmd.command_id), state.waits_made(cmd.command_id))
    if rounds != (tries_before, waits_before):
        return []
    if feed is not None and feed.base_position != state.feed_position:
        return []
    meta = {**trace, "command_id": cmd.command_id}
    events: list[DomainEvent] = []

    def version() -> int:
        return state.version + len(events) + 1

    for number, attempt in enumerate(outcome.attempts, start=1):
        status: AttemptOutcome
        if attempt.cancelled:
            status = "cancelled"
        elif attempt.error is None:
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
                institution_id=state.institution_id,
                blame=blame_of(attempt.error) if attempt.error else None,
                space_id=state.space_id,
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
    events.extend(
        link_health_events(
            state,
            cmd,
            outcome,
            now=now,
            meta=meta,
            first_version=version(),
            relink=relink,
            # Waiting longer would not have helped: say where to link instead.
            giving_up=gave_up in ("max_age", "tries_spent") and resume_at is None,
        )
    )
    if outcome.success and outcome.provider is not None:
        summary = outcome.summary
        if feed is not None:
            events.extend(_appended(state, cmd, feed, now=now, meta=meta, version=version))
            summary = {**summary, **_feed_stretch(feed)}
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
                summary=summary,
                ranking=outcome.ranking,
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
                    tries=state.tries_made(cmd.command_id) + (0 if refused else 1),
                    waits=state.waits_made(cmd.command_id) + (1 if refused else 0),
                    refused=refused,
                    received_at=received_at or state.received_at(cmd.command_id) or now,
                    resume_at=resume_at,
                    error=error,
                    command=msgspec.to_builtins(cmd),
                    ranking=outcome.ranking,
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
                ranking=outcome.ranking,
            )
        )
    return events


def _appended(
    state: ConnectionState,
    cmd: Command,
    feed: FeedDraft,
    *,
    now: datetime,
    meta: dict[str, str],
    version: Callable[[], int],
) -> list[FeedAppended]:
    """The walk's `FeedAppended`, or none when it would change nothing (`_changes_nothing`)."""
    if _changes_nothing(state, feed):
        return []
    return [feed_appended(state, cmd, feed, now=now, meta=meta, version=version())]


def _feed_stretch(feed: FeedDraft) -> dict[str, object]:
    """Where the sync's entries sit in the feed: a resent command is answered from
    there, with the same entries, whenever it comes."""
    return {
        "feed_from": feed.base_position + 1,
        "feed_to": feed.base_position + len(feed.entries),
        "has_more": feed.has_more,
    }


def _changes_nothing(state: ConnectionState, feed: FeedDraft) -> bool:
    """A walk that found nothing new: no entry, no copy recognised, the same cursor and
    the same pending ids held. Its `FeedAppended` would leave the connection as it
    is, so none is recorded (issue #13: most syncs find nothing new, and each event
    costs a write, a relay, a projection); `SyncCompleted` still says where the
    sync's (empty) stretch of the feed sits."""
    return (
        not feed.entries
        and not feed.recognised
        and state.cursors.get(feed.provider) == feed.cursor
        and state.held.get(feed.provider, ()) == feed.held
    )


def feed_appended(
    state: ConnectionState,
    cmd: Command,
    feed: FeedDraft,
    *,
    now: datetime,
    meta: dict[str, str],
    version: int,
) -> FeedAppended:
    """The draft's entries at the feed's next positions, and the link's new cursor."""
    return FeedAppended(
        originator_id=state.id,
        originator_version=version,
        timestamp=now,
        metadata=meta,
        command_id=cmd.command_id,
        provider=feed.provider,
        cursor=feed.cursor,
        has_more=feed.has_more,
        entries=tuple(
            FeedEntry(
                position=state.feed_position + number,
                change=planned.change,
                syncyard_transaction_id=planned.syncyard_id,
                provider=feed.provider,
                provider_transaction_id=planned.provider_id,
                transaction=planned.transaction,
                match=planned.match,
                candidates=planned.candidates,
            )
            for number, planned in enumerate(feed.entries, start=1)
        ),
        recognised=tuple(
            Recognition(
                provider_transaction_id=seen.provider_id,
                syncyard_transaction_id=seen.syncyard_id,
                match=seen.match,
                candidates=seen.candidates,
                transaction=seen.transaction,
                delivered_at=seen.delivered_at,
            )
            for seen in feed.recognised
        ),
        held=feed.held,
    )


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

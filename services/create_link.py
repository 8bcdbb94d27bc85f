"""`link.create`: a link token from the institution's providers, failing over freely.

When every provider the institution maps to refuses without a call (each
one's breaker open or probing, a rate limit, a full bulkhead), the command
waits as a refused sync does: no try spent, back when the first refusal
lifts (with jitter), recorded as a refused `SyncDeferred`. A person who asked
to link a bank during an outage gets a token once a provider takes calls
again, instead of an error to retry by hand; the wait ends at the link
deadline (`Dependencies.link_max_wait`, the command's own `deadline` when
earlier), since a token later than that finds nobody at the screen. A
provider that was called and failed still ends the command at once: every
candidate was tried already, and the caller decides whether to ask again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from events.base import DomainEvent
from events.commands import CreateLink
from events.connection import SyncDeferred
from events.results import CommandResult
from services.connections.domain import (
    ConnectionState,
    Outcome,
    as_duplicate,
    connection_id_for,
    decide_open,
    decide_outcome,
    fold,
    result_for,
)
from services.dependencies import Dependencies
from services.ports import Change
from services.providers.base import LinkCredentials
from services.resilience.retry import NextTry
from services.sync_connection import decide_retry

LinkDecision = Callable[[ConnectionState | None], list[DomainEvent]]


async def call_for_link(deps: Dependencies, cmd: CreateLink) -> Outcome:
    """A link token from the first provider in the institution's order that answers.

    No token exists yet, so this fails over freely: every configured provider
    the institution maps to is a candidate, and one whose breaker refuses is
    passed over for the next. The command handler and the link saga's step
    both come here, so a link is created one way.
    """
    orchestrator = deps.orchestrator
    order = (
        orchestrator.directory.providers_for(cmd.institution_id, cmd.region)
        if orchestrator.directory is not None
        else orchestrator.hierarchy.get(cmd.region, ())
    )
    candidates = [
        LinkCredentials(provider=provider, item_id="", access_token="")
        for provider in order
        if provider in orchestrator.providers
    ]
    return await orchestrator.execute_with_failover(
        cmd, candidates, cmd.region, person_waiting=True
    )


def record_link(
    cmd: CreateLink, outcome: Outcome, *, now: datetime, trace: dict[str, str], **waiting: Any
) -> LinkDecision:
    """The decision that records the outcome on the account's connection, opening it if new.

    `waiting`: `decide_outcome`'s keywords for a refused command that waits.
    """

    def record(fresh: ConnectionState | None) -> list[DomainEvent]:
        opened = decide_open(fresh, cmd, now=now, trace=trace)
        current = fold(fresh, opened)
        assert current is not None  # decide_open opens a connection that did not exist
        return [*opened, *decide_outcome(current, cmd, outcome, now=now, trace=trace, **waiting)]

    return record


async def request_link(
    deps: Dependencies, cmd: CreateLink, *, now: datetime, trace: dict[str, str]
) -> tuple[Outcome, LinkDecision]:
    """`call_for_link`, and the decision recording its attempts (the link saga's step)."""
    outcome = await call_for_link(deps, cmd)
    return outcome, record_link(cmd, outcome, now=now, trace=trace)


async def create_link(deps: Dependencies, cmd: CreateLink, trace: dict[str, str]) -> CommandResult:
    """`link.create`: a link token, its attempts recorded on the account's connection."""
    connection_id = connection_id_for(cmd.space_id, cmd.account_id)
    state = await deps.store.get_connection(connection_id)
    if state is not None and cmd.command_id in state.recent_results:
        return as_duplicate(state.recent_results[cmd.command_id])
    deferral = state.deferred.get(cmd.command_id) if state is not None else None
    if deferral is not None and deps.now() < deferral.resume_at:
        # A redelivery before its time: set its timer again (a crash may have lost it).
        await deps.deferrals.defer(
            cmd, tries=deferral.tries, waits=deferral.waits, resume_at=deferral.resume_at
        )
        return as_duplicate(deferral.result)
    waits_before = state.waits_made(cmd.command_id) if state is not None else 0
    received_at = (state.received_at(cmd.command_id) if state is not None else None) or deps.now()
    outcome = await call_for_link(deps, cmd)
    now = deps.now()
    next_try = NextTry()
    if outcome.refused_without_call:
        next_try, outcome = decide_retry(
            deps, cmd, outcome, tries_before=0, received_at=received_at, now=now,
            max_age=deps.link_max_wait,
        )  # fmt: skip
    record = record_link(
        cmd, outcome, now=now, trace=trace, resume_at=next_try.resume_at,
        waits_before=waits_before, refused=next_try.refused, received_at=received_at,
    )  # fmt: skip
    recorded = await deps.store.commit(Change(connection_id=connection_id, decide=record))
    if recorded:
        for event in recorded:
            if isinstance(event, SyncDeferred):
                await deps.deferrals.defer(
                    cmd, tries=event.tries, waits=event.waits, resume_at=event.resume_at
                )
        return msgspec.structs.replace(result_for(outcome, cmd), deferred_until=next_try.resume_at)
    fresh = await deps.store.get_connection(connection_id)
    assert fresh is not None
    if cmd.command_id in fresh.deferred:
        # Its timer too (see services/sync_connection.py): one per round, so harmless.
        deferral = fresh.deferred[cmd.command_id]
        await deps.deferrals.defer(
            cmd, tries=deferral.tries, waits=deferral.waits, resume_at=deferral.resume_at
        )
        return as_duplicate(deferral.result)
    return as_duplicate(fresh.recent_results[cmd.command_id])

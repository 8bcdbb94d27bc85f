"""`sync.transactions` and `accounts.get`: call the connection's providers, record, defer."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import msgspec

from events.base import DomainEvent
from events.commands import (
    Command,
    SyncTransactions,
)
from events.connection import SyncCompleted, SyncDeferred
from events.errors import ErrorInfo
from events.feed import FeedAppended, FeedPage
from events.results import CommandResult
from services.connections.domain import (
    ConnectionState,
    Outcome,
    as_duplicate,
    connection_id_for,
    decide_outcome,
    result_for,
)
from services.connections.state import FeedDraft
from services.dependencies import Dependencies, refused
from services.ports import Change
from services.reconciliation.feed import PageOfChanges, plan_page
from services.resilience.retry import NextTry, decide_next_try


class SyncRaceError(RuntimeError):
    """Another replica's sync of the account appended to its feed first.

    The command is not acknowledged: its redelivery plans again on the new feed.
    """


async def sync_connection(deps: Dependencies, cmd: Command, trace: dict[str, str]) -> CommandResult:
    connection_id = connection_id_for(cmd.space_id, cmd.account_id)
    state = await deps.store.get_connection(connection_id)
    if state is None:
        return refused(
            cmd,
            "connection_not_found",
            f"no connection for account {cmd.account_id!r} in space {cmd.space_id!r}; "
            "send connection.register first",
        )
    if cmd.command_id in state.recent_results:
        return await _answer_again(deps, state, state.recent_results[cmd.command_id])
    received_at = deps.now()
    deferral = state.deferred.get(cmd.command_id)
    if deferral is not None and received_at < deferral.resume_at:
        # A redelivery before its time: the durable timer sends it when due. Set it
        # again (one timer per round): a crash after the deferral was recorded but
        # before its timer was set left it unset, and this is the command's redelivery.
        await deps.deferrals.defer(
            cmd, tries=deferral.tries, waits=deferral.waits, resume_at=deferral.resume_at
        )
        return as_duplicate(deferral.result)
    tries_before = state.tries_made(cmd.command_id)
    waits_before = state.waits_made(cmd.command_id)
    received_at = state.received_at(cmd.command_id) or received_at
    usable = set(state.usable_links(deps.now()))
    links = [
        # syncyard keeps each link's cursor: a failover resumes the backup from its own.
        msgspec.structs.replace(link, cursor=state.cursors.get(link.provider))
        for link in await deps.store.credentials(state)
        if link.provider in usable
    ]
    if state.links and not links:
        outcome = _no_usable_link(state, deps.now())
    else:
        outcome = await deps.orchestrator.execute_with_failover(
            cmd, links, state.region, institution_id=state.institution_id
        )
    feed = None
    if isinstance(cmd, SyncTransactions) and outcome.success:
        feed = await plan_feed(deps, state, outcome)
        deps.checkpoint("after_provider")  # the provider's pages planned, nothing recorded
    now = deps.now()
    next_try, outcome = decide_retry(
        deps, cmd, outcome, tries_before=tries_before, received_at=received_at, now=now
    )
    resume_at = next_try.resume_at

    def decide(fresh: ConnectionState | None) -> list[Any]:
        assert fresh is not None
        return decide_outcome(
            fresh,
            cmd,
            outcome,
            now=now,
            trace=trace,
            resume_at=resume_at,
            tries_before=tries_before,
            waits_before=waits_before,
            refused=next_try.refused,
            received_at=received_at,
            gave_up=next_try.gave_up,
            relink=deps.relink,
            feed=feed,
        )

    recorded = await deps.store.commit(Change(connection_id=connection_id, decide=decide))
    if recorded:
        deps.checkpoint("after_commit")  # recorded (and indexed); not relayed or answered yet
        if feed is not None:
            # Usually written with the events already: then this returns at once.
            await deps.feed_index.record(connection_id, recorded)
        # The event first, the timer after: the command is acknowledged only once
        # both are done, so a crash between them brings the command back (above).
        for event in recorded:
            if isinstance(event, SyncDeferred):
                await deps.deferrals.defer(
                    cmd, tries=event.tries, waits=event.waits, resume_at=event.resume_at
                )
        return _answer(cmd, outcome, recorded, resume_at, account_id=state.account_id, feed=feed)
    # Another delivery of this command got there first: answer what it recorded, as a
    # duplicate. (This call's own commit, its answer lost, came back as `recorded`.)
    fresh = await deps.store.get_connection(connection_id)
    assert fresh is not None
    if cmd.command_id in fresh.recent_results:
        return await _answer_again(deps, fresh, fresh.recent_results[cmd.command_id])
    if cmd.command_id in fresh.deferred:
        # Its timer too: the delivery that recorded the deferral may have died before
        # setting it. One timer per round, so setting it again is harmless. (A commit
        # of this very call whose answer was lost is not here: the store recognises
        # its own events and `recorded` holds them, infra/eventstore.py.)
        deferral = fresh.deferred[cmd.command_id]
        await deps.deferrals.defer(
            cmd, tries=deferral.tries, waits=deferral.waits, resume_at=deferral.resume_at
        )
        return as_duplicate(deferral.result)
    raise SyncRaceError(f"account {cmd.account_id!r}: another sync appended to its feed first")


async def plan_feed(
    deps: Dependencies, state: ConnectionState, outcome: Outcome
) -> FeedDraft | None:
    """The walk's changes reconciled into feed entries, against the feed as it stands.

    The sync handler and the link saga's first sync both plan here, so a link's
    transactions reach the feed one way.
    """
    data, provider = outcome.data, outcome.provider
    if data is None or provider is None:
        return None
    added, modified = data.get("added", []), data.get("modified", [])
    # The link's last walk held some pending ids' removals for this one to decide.
    removed = [*state.held.get(provider, ()), *(str(r) for r in data.get("removed", []))]
    has_more = bool(data.get("has_more", False))
    incoming = [*added, *modified]
    ids = [str(t["transaction_id"]) for t in incoming] + removed
    ids += [str(t["pending_transaction_id"]) for t in incoming if t.get("pending_transaction_id")]
    dates = [date.fromisoformat(str(t["date"])[:10]) for t in incoming]
    window = timedelta(days=deps.tolerance.days)
    known = await deps.feed_index.known(
        state.id,
        upto_version=state.version,
        provider=provider,
        provider_ids=ids,
        around=(min(dates) - window, max(dates) + window) if dates else None,
    )
    plan = plan_page(
        str(state.id),
        PageOfChanges(
            provider=provider, added=added, modified=modified, removed=removed, has_more=has_more
        ),
        known,
        next_position=state.feed_position + 1,
        tolerance=deps.tolerance,
    )
    return FeedDraft(
        provider=provider,
        cursor=str(data.get("next_cursor", "")),
        has_more=has_more,
        base_position=state.feed_position,
        entries=tuple(plan.entries),
        recognised=tuple(plan.recognised),
        held=tuple(plan.held),
    )


def _answer(
    cmd: Command,
    outcome: Outcome,
    recorded: list[DomainEvent],
    resume_at: datetime | None,
    *,
    account_id: str,
    feed: FeedDraft | None,
) -> CommandResult:
    result = msgspec.structs.replace(result_for(outcome, cmd), deferred_until=resume_at)
    if feed is None:
        return result
    # Upstream gets the feed's entries, in syncyard ids, never the provider's page; a
    # walk that found nothing new recorded no FeedAppended, and answers an empty page.
    appended = next((e for e in recorded if isinstance(e, FeedAppended)), None)
    entries = appended.entries if appended is not None else ()
    page = FeedPage(
        account_id=account_id,
        entries=entries,
        position=entries[-1].position if entries else _base(recorded),
        has_more=feed.has_more,
    )
    return msgspec.structs.replace(result, data=msgspec.to_builtins(page))


def _base(recorded: list[DomainEvent]) -> int:
    completed = next(e for e in recorded if isinstance(e, SyncCompleted))
    return int(completed.summary["feed_from"]) - 1


async def _answer_again(
    deps: Dependencies, state: ConnectionState, result: CommandResult
) -> CommandResult:
    """The original answer to a resent command: its feed entries read back, nothing called."""
    summary = (result.data or {}).get("summary", {})
    if "feed_from" not in summary:
        return as_duplicate(result)
    since, upto = int(summary["feed_from"]) - 1, int(summary["feed_to"])
    entries = (
        await deps.feed.read(state.id, since=since, limit=upto - since, reached=upto)
        if upto > since
        else []
    )
    page = FeedPage(
        account_id=state.account_id,
        entries=tuple(entries),
        position=upto,
        has_more=bool(summary.get("has_more", False)),
    )
    return as_duplicate(msgspec.structs.replace(result, data=msgspec.to_builtins(page)))


def _no_usable_link(state: ConnectionState, now: datetime) -> Outcome:
    """Every link is waiting on maintenance or on the person: say which, call nobody."""
    in_maintenance = {p: u for p, u in state.maintenance_until.items() if u > now}
    if in_maintenance:
        provider, until = min(in_maintenance.items(), key=lambda item: item[1])
        error = ErrorInfo(
            code="in_maintenance",
            message=f"{provider} is in maintenance until {until.isoformat()}; resuming then",
            type="maintenance",
            retryable=True,
            provider=provider,
        )
        wait = (until - now).total_seconds()
        refused: tuple[str, ...] = (provider,)  # syncyard's own refusal: no try spent
    else:
        waiting = ", ".join(sorted(state.reauth))
        error = ErrorInfo(
            code="reauth_required",
            message=f"the person must re-authenticate the link at {waiting} "
            "(an update-mode link) before syncs resume",
            type="auth",
            retryable=False,
        )
        wait = None
        refused = ()
    return Outcome(
        success=False,
        provider=None,
        failover_used=False,
        attempts=(),
        response_time_ms=0.0,
        error=error,
        retry_after_s=wait,
        refused=refused,
    )


def decide_retry(
    deps: Dependencies,
    cmd: Command,
    outcome: Outcome,
    *,
    tries_before: int,
    received_at: datetime,
    now: datetime,
    max_age: timedelta | None = None,
) -> tuple[NextTry, Outcome]:
    """When a command that did not succeed runs again, or why it ends now.

    A command refused without a call waits for the refusal to lift and spends
    no try; one that failed at a provider spends one and backs off. Either way
    it ends only on an error time cannot fix, at its maximum age, or at its own
    deadline (services/resilience/retry.py). Past its maximum age (`max_age`,
    the sync's by default), the outcome's error says so.
    """
    error = outcome.error
    if outcome.success or error is None:
        return NextTry(), outcome
    refused = outcome.refused_without_call
    next_try = decide_next_try(
        error_type=error.type,
        retryable=error.retryable,
        refused=refused,
        retry_after_s=outcome.retry_after_s,
        tries=tries_before if refused else tries_before + 1,
        received_at=received_at,
        now=now,
        policies=deps.retry_policies,
        max_age=deps.sync_max_age if max_age is None else max_age,
        deadline=cmd.deadline,
        rng=deps.rng,
    )
    if next_try.gave_up == "max_age":
        return next_try, _too_old(outcome, received_at, now)
    return next_try, outcome


def _too_old(outcome: Outcome, received_at: datetime, now: datetime) -> Outcome:
    """The final error of a command that reached its maximum age still failing."""
    last = outcome.error
    assert last is not None
    error = ErrorInfo(
        code="sync_max_age_exceeded",
        message=f"still failing {now - received_at} after it was first received; "
        f"last error {last.code}: {last.message}",
        type=last.type,
        retryable=False,
        provider=last.provider,
    )
    return msgspec.structs.replace(outcome, error=error)

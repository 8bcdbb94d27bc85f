"""`sync.transactions` and `accounts.get`: call the connection's providers, record, defer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from events.commands import (
    Command,
    SyncTransactions,
)
from events.connection import SyncDeferred
from events.errors import ErrorInfo
from events.results import CommandResult
from services.connections.domain import (
    ConnectionState,
    Outcome,
    as_duplicate,
    connection_id_for,
    decide_outcome,
    result_for,
)
from services.dependencies import Dependencies, refused
from services.ports import Change
from services.resilience.retry import retry_delay_s


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
        return as_duplicate(state.recent_results[cmd.command_id])
    deferral = state.deferred.get(cmd.command_id)
    if deferral is not None and deps.now() < deferral.resume_at:
        # A redelivery before its time: the durable timer sends it when due. Set it
        # again (one timer per try): a crash after the deferral was recorded but
        # before its timer was set left it unset, and this is the command's redelivery.
        await deps.deferrals.defer(cmd, tries=deferral.tries, resume_at=deferral.resume_at)
        return as_duplicate(deferral.result)
    tries_before = state.tries_made(cmd.command_id)
    usable = set(state.usable_links(deps.now()))
    links = [link for link in await deps.store.credentials(state) if link.provider in usable]
    if state.links and not links:
        outcome = _no_usable_link(state, deps.now())
    else:
        outcome = await deps.orchestrator.execute_with_failover(cmd, links, state.region)
    if isinstance(cmd, SyncTransactions) and outcome.success:
        outcome = await _reconciled(deps, connection_id, outcome, len(state.links) > 1)
    now = deps.now()
    resume_at = _resume_at(deps, cmd, outcome, tries_before + 1, now)

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
            relink=deps.relink,
        )

    recorded = await deps.store.commit(Change(connection_id=connection_id, decide=decide))
    if recorded:
        # The event first, the timer after: the command is acknowledged only once
        # both are done, so a crash between them brings the command back (above).
        for event in recorded:
            if isinstance(event, SyncDeferred):
                await deps.deferrals.defer(cmd, tries=event.tries, resume_at=event.resume_at)
        return msgspec.structs.replace(result_for(outcome, cmd), deferred_until=resume_at)
    # Another delivery of this command got there first: answer what it recorded.
    fresh = await deps.store.get_connection(connection_id)
    assert fresh is not None
    if cmd.command_id in fresh.recent_results:
        return as_duplicate(fresh.recent_results[cmd.command_id])
    return as_duplicate(fresh.deferred[cmd.command_id].result)


async def _reconciled(
    deps: Dependencies, connection_id: UUID, outcome: Outcome, multi_homed: bool
) -> Outcome:
    """Give every transaction its stable syncyard id; hold back purchases upstream
    already received through another provider, so a failover never doubles one."""
    if deps.ledger is None or outcome.data is None or outcome.provider is None:
        return outcome
    data, reconciled = await deps.ledger.reconcile(
        connection_id, outcome.provider, outcome.data, multi_homed=multi_homed
    )
    summary = {**outcome.summary, "added": len(data["added"]), "reconciled": reconciled}
    return msgspec.structs.replace(outcome, data=data, summary=summary)


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
    return Outcome(
        success=False,
        provider=None,
        failover_used=False,
        attempts=(),
        response_time_ms=0.0,
        error=error,
        retry_after_s=wait,
    )


def _resume_at(
    deps: Dependencies, cmd: Command, outcome: Outcome, tries: int, now: datetime
) -> datetime | None:
    """When to try a failed command again, or None to let it fail now.

    Only errors time can fix are deferred, within the error class's tries and
    never past the command's own deadline.
    """
    error = outcome.error
    if outcome.success or error is None or not error.retryable:
        return None
    policy = deps.retry_policies.get(error.type)
    if policy is None:
        return None
    delay = retry_delay_s(policy, tries, retry_after_s=outcome.retry_after_s, rng=deps.rng)
    if delay is None:
        return None
    resume_at = now + timedelta(seconds=delay)
    if cmd.deadline is not None and resume_at >= _aware(cmd.deadline):
        return None
    return resume_at


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

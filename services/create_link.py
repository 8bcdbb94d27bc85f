"""`link.create`: a link token from the institution's providers, failing over freely."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from events.base import DomainEvent
from events.commands import CreateLink
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


async def request_link(
    deps: Dependencies, cmd: CreateLink, *, now: datetime, trace: dict[str, str]
) -> tuple[Outcome, Callable[[ConnectionState | None], list[DomainEvent]]]:
    """A link token from the first provider in the institution's order that answers.

    No token exists yet, so this fails over freely: every configured provider
    the institution maps to is a candidate. Returns the outcome and the
    decision that records its attempts on the account's connection (opening
    it if it is new). The command handler and the link saga's step both come
    here, so a link is created one way.
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
    outcome = await orchestrator.execute_with_failover(cmd, candidates, cmd.region)

    def record(fresh: ConnectionState | None) -> list[DomainEvent]:
        opened = decide_open(fresh, cmd, now=now, trace=trace)
        current = fold(fresh, opened)
        assert current is not None  # decide_open opens a connection that did not exist
        return [*opened, *decide_outcome(current, cmd, outcome, now=now, trace=trace)]

    return outcome, record


async def create_link(deps: Dependencies, cmd: CreateLink, trace: dict[str, str]) -> CommandResult:
    """`link.create`: a link token, its attempts recorded on the account's connection."""
    connection_id = connection_id_for(cmd.space_id, cmd.account_id)
    state = await deps.store.get_connection(connection_id)
    if state is not None and cmd.command_id in state.recent_results:
        return as_duplicate(state.recent_results[cmd.command_id])
    outcome, record = await request_link(deps, cmd, now=deps.now(), trace=trace)
    recorded = await deps.store.commit(Change(connection_id=connection_id, decide=record))
    if recorded:
        return result_for(outcome, cmd)
    fresh = await deps.store.get_connection(connection_id)
    assert fresh is not None
    return as_duplicate(fresh.recent_results[cmd.command_id])

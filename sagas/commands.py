"""Command handlers that start sagas and hand them the person's completion.

`link.start` and `connection.reconnect` record the saga's first event and
put it on the schedule; the runner does the rest, so the command's result
says only that the flow started (with the saga id). Upstream waits for
`LinkCompleted` / `LinkAborted` on `syncyard.evt.saga.*`. `link.complete`
(and the provider's webhook, `infra/http/sagas.py`) keeps the public token in a
private stream and wakes the saga.
"""

from __future__ import annotations

import functools
from typing import Any
from uuid import UUID

from events.commands import Command, CompleteLink, ReconnectConnection, ResumeSaga, StartLink
from events.credentials import PublicTokenReceived
from events.results import CommandResult
from events.saga import (
    CompletionSource,
    LinkCompletionReceived,
    SagaKind,
    SagaResumed,
    SagaStarted,
)
from sagas.decide import pending_compensations
from sagas.flows import FLOWS
from sagas.ports import SagaConflictError, SagaStore
from sagas.state import SagaState, fold, public_token_stream_for, saga_id_for
from services.connections.domain import connection_id_for
from services.connections.state import pair_key
from services.dependencies import Dependencies, Handler, refused
from services.providers.base import ProviderAdapter, WebhookEvent


class CompletionRefusedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _start(
    deps: Dependencies,
    store: SagaStore,
    cmd: Command,
    *,
    kind: SagaKind,
    params: dict[str, Any],
    trace: dict[str, str],
) -> CommandResult:
    saga_id = saga_id_for(cmd.space_id, cmd.command_id)
    state = await store.load(saga_id)
    duplicate = state is not None
    if state is None:
        started = SagaStarted(
            originator_id=saga_id,
            originator_version=1,
            timestamp=deps.now(),
            metadata={**trace, "command_id": cmd.command_id},
            kind=kind,
            command_id=cmd.command_id,
            space_id=cmd.space_id,
            account_id=cmd.account_id,
            connection_id=connection_id_for(cmd.space_id, cmd.account_id),
            params={k: v for k, v in params.items() if v is not None},
        )
        try:
            await store.append([started])
            state = fold(None, [started])
        except SagaConflictError:
            duplicate, state = True, await store.load(saga_id)
    assert state is not None
    return await _scheduled(deps, store, cmd, state, duplicate)


async def _scheduled(
    deps: Dependencies, store: SagaStore, cmd: Command, state: SagaState, duplicate: bool
) -> CommandResult:
    """Put an unfinished saga on the schedule (the runner does the rest) and answer."""
    # Also on a duplicate: a crash between the append and this insert leaves no row.
    if not state.finished:
        await store.schedule(state.id, deps.now())
    return CommandResult(
        command_id=cmd.command_id,
        op=cmd.op,
        success=True,
        duplicate=duplicate,
        data={"saga_id": str(state.id), "status": state.status},
    )


async def start_link(
    deps: Dependencies, cmd: StartLink, trace: dict[str, str], *, store: SagaStore
) -> CommandResult:
    params = {
        "institution_id": cmd.institution_id,
        "region": cmd.region,
        "preferred_provider": cmd.preferred_provider,
        "products": list(cmd.products),
        "country_codes": list(cmd.country_codes),
        "webhook_url": cmd.webhook_url,
        "redirect_uri": cmd.redirect_uri,
        "link_deadline_s": cmd.link_deadline_s or store.link_deadline_s,
    }
    return await _start(deps, store, cmd, kind="link", params=params, trace=trace)


async def reconnect(
    deps: Dependencies, cmd: ReconnectConnection, trace: dict[str, str], *, store: SagaStore
) -> CommandResult:
    connection = await deps.store.get_connection(connection_id_for(cmd.space_id, cmd.account_id))
    if connection is None:
        return refused(cmd, "unknown_connection", f"no connection for account {cmd.account_id!r}")
    provider = cmd.provider or next(iter(sorted(connection.reauth)), None)
    if provider is None:
        return refused(
            cmd, "nothing_to_reconnect", "no link awaits re-authentication; name a provider"
        )
    link = connection.links.get(provider)
    if link is None:
        return refused(cmd, "unknown_link", f"the connection holds no link at {provider!r}")
    params = {
        "provider": provider,
        "item_id": link.item_id,
        "credential_id": str(link.credential_id),
        "region": connection.region,
        "webhook_url": cmd.webhook_url,
        "link_deadline_s": cmd.link_deadline_s or store.link_deadline_s,
    }
    return await _start(deps, store, cmd, kind="reconnect", params=params, trace=trace)


async def complete_link(
    deps: Dependencies, cmd: CompleteLink, trace: dict[str, str], *, store: SagaStore
) -> CommandResult:
    saga_id = saga_id_for(cmd.space_id, cmd.link_command_id)
    try:
        duplicate = await receive_completion(
            deps, store, saga_id, cmd.public_token, "command", account_id=cmd.account_id
        )
    except CompletionRefusedError as exc:
        return refused(cmd, exc.code, str(exc))
    return CommandResult(
        command_id=cmd.command_id,
        op=cmd.op,
        success=True,
        duplicate=duplicate,
        data={"saga_id": str(saga_id)},
    )


async def receive_completion(
    deps: Dependencies,
    store: SagaStore,
    saga_id: UUID,
    public_token: str | None,
    source: CompletionSource,
    *,
    account_id: str | None = None,
) -> bool:
    """Record that the person finished; True when it was already recorded."""
    for _ in range(5):
        state = await store.load(saga_id)
        _check_open(state, public_token, account_id)
        assert state is not None
        if state.completion_received:
            return True
        now = deps.now()
        events: list[Any] = [
            LinkCompletionReceived(
                originator_id=saga_id,
                originator_version=state.version + 1,
                timestamp=now,
                metadata={"command_id": state.command_id},
                source=source,
                with_public_token=public_token is not None,
            )
        ]
        if public_token is not None:
            events.append(
                PublicTokenReceived(
                    originator_id=public_token_stream_for(saga_id),
                    originator_version=1,
                    timestamp=now,
                    saga_id=str(saga_id),
                    provider=state.outputs.get("create_link", {}).get("provider"),
                    public_token=public_token,
                )
            )
        try:
            await store.append(events)
        except SagaConflictError:
            continue  # the runner recorded something meanwhile: look again
        await store.wake(saga_id)
        return False
    raise CompletionRefusedError("busy", "the saga kept moving; send the completion again")


async def webhook_completion(
    state: SagaState,
    created: dict[str, Any],
    event: WebhookEvent,
    adapter: ProviderAdapter,
    *,
    timeout_s: float,
) -> tuple[str | None, str | None]:
    """(public token, None) when a verified webhook completes this saga, else (None, why).

    A signature proves the provider sent the body, not that it is about this
    saga: a webhook counts only when it names this saga's link session, by its
    link token (Plaid's LINK webhooks) or by what the saga's link is at the
    provider. A reconnect knows its item; a new link knows only its person, so
    the provider-side user, customer or link the webhook names must be the one
    made for this person (`belongs_to`). A webhook that names none of these
    (MX, Finicity and Belvo carry no link token, Plaid's ITEM webhooks neither)
    completes nothing. Raises ProviderCallError when the provider cannot say.
    """
    if event.link_token is not None and event.link_token != created.get("link_token"):
        return None, "link_token_mismatch"
    session = event.link_token is not None
    if state.kind == "link" and event.kind == "public_token" and event.public_token:
        if not session:
            user_ref = pair_key(state.space_id, state.account_id)
            owned = await adapter.belongs_to(
                event.public_token, user_ref=user_ref, timeout_s=timeout_s
            )
            if owned is not True:
                return None, "not_this_link_session"
        return event.public_token, None
    repaired = event.raw.get("webhook_code") == "LOGIN_REPAIRED"
    if state.kind == "reconnect" and (repaired or event.kind == "public_token"):
        if not session and (event.item_id is None or event.item_id != created.get("item_id")):
            return None, "not_this_link_session"
        return None, None
    return None, event.kind


def _check_open(state: SagaState | None, public_token: str | None, account_id: str | None) -> None:
    if state is None or (account_id is not None and state.account_id != account_id):
        raise CompletionRefusedError("unknown_link", "no link flow was started with that id")
    if state.completion_received:
        return
    if state.finished or state.compensating is not None:
        why = state.compensating.reason if state.compensating else state.status
        raise CompletionRefusedError("link_closed", f"the link flow has ended ({why})")
    if state.kind == "link" and public_token is None:
        raise CompletionRefusedError("public_token_required", "a link completes with its token")


async def resume_saga(
    deps: Dependencies, cmd: ResumeSaga, trace: dict[str, str], *, store: SagaStore
) -> CommandResult:
    """Give the compensation that kept failing a fresh retry budget, and wake the saga."""
    saga_id = saga_id_for(cmd.space_id, cmd.saga_command_id)
    for _ in range(5):
        state = await store.load(saga_id)
        if state is None or state.account_id != cmd.account_id:
            return refused(cmd, "unknown_saga", f"no saga was started by {cmd.saga_command_id!r}")
        duplicate = cmd.command_id in state.resumed_by
        if not duplicate:
            if state.status != "needs_attention":
                return refused(
                    cmd,
                    "saga_not_stuck",
                    f"saga {saga_id} is {state.status}: only a saga that needs attention resumes",
                )
            (compensation, _), *_ = pending_compensations(state, FLOWS[state.kind])
            resumed = SagaResumed(
                originator_id=saga_id,
                originator_version=state.version + 1,
                timestamp=deps.now(),
                metadata={**trace, "command_id": state.command_id},
                compensation=compensation,
                command_id=cmd.command_id,
                note=cmd.note,
            )
            try:
                await store.append([resumed])
            except SagaConflictError:
                continue  # another resume got there first: look again
            state = fold(state, [resumed])
            assert state is not None
        return await _scheduled(deps, store, cmd, state, duplicate)
    return refused(cmd, "busy", "the saga kept moving; send the command again")


def saga_handlers(store: SagaStore) -> dict[type[Command], Handler]:
    """The saga commands' table, bound to where the sagas live (joined at bootstrap)."""
    return {
        StartLink: functools.partial(start_link, store=store),
        CompleteLink: functools.partial(complete_link, store=store),
        ReconnectConnection: functools.partial(reconnect, store=store),
        ResumeSaga: functools.partial(resume_saga, store=store),
    }

"""The link flow's steps, each with the compensations that undo it.

create_link fails over freely (no token exists yet) through the
orchestrator; everything after it is bound to the provider that issued the
link. Provider calls run under the step's idempotency key
(`services.providers.http.idempotency_key`), so a step repeated after a
crash is not repeated at the provider. The access token goes only into the
credential stream (encrypted, never published); step outputs name the
provider, item and credential id.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import msgspec

from events.commands import CreateLink, GetAccounts, RegisterConnection, SyncTransactions
from events.connection import LinkAttemptAborted, ProviderUnlinked
from events.credentials import CredentialForgotten, CredentialStored
from events.errors import ErrorInfo
from sagas.steps import Executor, StepContext, StepFailedError, StepResult
from services.connections.domain import (
    ConnectionState,
    Outcome,
    credential_id_for,
    decide_outcome,
    decide_register,
)
from services.connections.state import pair_key
from services.create_link import request_link
from services.providers.base import ProviderCallError
from services.providers.http import idempotency_key
from services.resilience.retry import refusal_delay_s
from services.sync_connection import plan_feed


async def create_link(ctx: StepContext) -> StepResult:
    state, params = ctx.state, ctx.state.params
    cmd = CreateLink(
        command_id=f"{ctx.command_prefix}:create_link:{ctx.attempt}",
        space_id=state.space_id,
        account_id=state.account_id,
        institution_id=params.get("institution_id"),
        region=params.get("region", "US"),
        preferred_provider=params.get("preferred_provider"),
        products=tuple(params.get("products", ("transactions",))),
        country_codes=tuple(params.get("country_codes", ("US",))),
        webhook_url=params.get("webhook_url") or ctx.webhook_url,
        redirect_uri=params.get("redirect_uri"),
    )
    with idempotency_key(ctx.key):
        outcome, record = await request_link(ctx.deps, cmd, now=ctx.now, trace={})
    if outcome.refused_without_call:
        return _waits(ctx, outcome)
    if not outcome.success or outcome.data is None:
        error = outcome.error or ErrorInfo(
            code="no_outcome", message="no provider answered", type="unknown", retryable=True
        )
        return StepResult(error=error, connection=record)
    output = {
        "provider": outcome.provider,
        "link_token": outcome.data.get("token"),
        "expires_at": outcome.data.get("expires_at"),
        "failover_used": outcome.failover_used,
    }
    return StepResult(output=output, connection=record)


async def exchange_token(ctx: StepContext) -> StepResult:
    provider = str(ctx.state.outputs["create_link"]["provider"])
    public_token = await ctx.store.public_token(ctx.state.id)
    if public_token is None:
        raise StepFailedError.from_message(
            "public_token_missing", f"{provider} finished the link without a token"
        )
    adapter = ctx.adapter(provider)
    try:
        with idempotency_key(ctx.key):
            # Bound to the person the link was created for (the same `user_ref` as
            # create_link's): a token naming another person's provider-side user,
            # customer or link is refused, however the completion arrived.
            linked = await adapter.exchange_token_for(
                public_token,
                user_ref=pair_key(ctx.state.space_id, ctx.state.account_id),
                timeout_s=ctx.deps.orchestrator.call_timeout_s,
            )
    except ProviderCallError as exc:
        raise StepFailedError.from_provider(exc) from None
    # Same id on every attempt: a credential is stored once, with the step's success.
    register = RegisterConnection(
        command_id=f"{ctx.command_prefix}:exchange_token",
        space_id=ctx.state.space_id,
        account_id=ctx.state.account_id,
        provider=provider,
        item_id=linked.item_id,
        access_token=linked.access_token,
    )
    credential_id = credential_id_for(register.space_id, register.command_id)
    credential = CredentialStored(
        originator_id=credential_id,
        originator_version=1,
        timestamp=ctx.now,
        metadata={"command_id": register.command_id},
        provider=provider,
        item_id=linked.item_id,
        access_token=linked.access_token,
    )

    def record(fresh: ConnectionState | None) -> list[Any]:
        return decide_register(fresh, register, now=ctx.now, trace={})

    output = {"provider": provider, "item_id": linked.item_id, "credential_id": str(credential_id)}
    return StepResult(output=output, connection=record, private=(credential,))


async def _read(ctx: StepContext, cmd: GetAccounts | SyncTransactions) -> StepResult:
    """One call at the new link, recorded on the connection; a sync's page goes to the feed."""
    provider = str(ctx.state.outputs.get("exchange_token", ctx.state.params)["provider"])
    link = await ctx.link(provider)
    if link is None:
        raise StepFailedError.from_message(
            "link_missing", f"the connection holds no usable link at {provider}"
        )
    region = str(ctx.state.params.get("region", "US"))
    # Only the new link: its token is bound to this provider, so there is no failover.
    with idempotency_key(ctx.key):
        outcome = await ctx.deps.orchestrator.execute_with_failover(
            cmd, [link], region, person_waiting=True
        )
    if outcome.refused_without_call:
        return _waits(ctx, outcome)

    feed = None
    if isinstance(cmd, SyncTransactions) and outcome.success:
        connection = await ctx.deps.store.get_connection(ctx.state.connection_id)
        if connection is not None:
            feed = await plan_feed(ctx.deps, connection, outcome)

    def record(fresh: ConnectionState | None) -> list[Any]:
        assert fresh is not None
        return decide_outcome(fresh, cmd, outcome, now=ctx.now, trace={}, feed=feed)

    if not outcome.success:
        error = outcome.error or ErrorInfo(
            code="no_outcome", message="no provider answered", type="unknown", retryable=True
        )
        return StepResult(error=error, connection=record)
    return StepResult(output=dict(outcome.summary), connection=record)


def _waits(ctx: StepContext, outcome: Outcome) -> StepResult:
    """Refused without a call: the step comes back when the refusal lifts (with jitter).

    Nothing is recorded on the connection: no provider was called, and a link
    being made is no failure of the connection's. The saga's event says why.
    """
    assert outcome.error is not None
    delay = refusal_delay_s(outcome.retry_after_s, ctx.deps.rng)
    return StepResult(error=outcome.error, wait_until=ctx.now + timedelta(seconds=delay))


async def get_accounts(ctx: StepContext) -> StepResult:
    cmd = GetAccounts(
        command_id=f"{ctx.command_prefix}:get_accounts:{ctx.attempt}",
        space_id=ctx.state.space_id,
        account_id=ctx.state.account_id,
        region=ctx.state.params.get("region", "US"),
    )
    return await _read(ctx, cmd)


async def sync_transactions(ctx: StepContext) -> StepResult:
    cmd = SyncTransactions(
        command_id=f"{ctx.command_prefix}:sync_transactions:{ctx.attempt}",
        space_id=ctx.state.space_id,
        account_id=ctx.state.account_id,
        region=ctx.state.params.get("region", "US"),
    )
    result = await _read(ctx, cmd)
    # The cursor is the connection's business; the saga keeps the counts.
    output = {k: v for k, v in result.output.items() if k != "next_cursor"}
    return StepResult(output=output, error=result.error, connection=result.connection)


# -- compensations -----------------------------------------------------------
async def remove_item(ctx: StepContext) -> StepResult:
    linked = ctx.state.outputs["exchange_token"]
    link = await ctx.link(str(linked["provider"]))
    if link is None or link.item_id != linked["item_id"]:
        return StepResult(output={"removed": False, "why": "token already forgotten"})
    try:
        with idempotency_key(ctx.key):
            await ctx.adapter(link.provider).remove_item(
                link, timeout_s=ctx.deps.orchestrator.call_timeout_s
            )
    except ProviderCallError as exc:
        raise StepFailedError.from_provider(exc) from None
    return StepResult(output={"removed": True, "item_id": link.item_id})


async def forget_token(ctx: StepContext) -> StepResult:
    linked = ctx.state.outputs["exchange_token"]
    reason = ctx.state.compensating.reason if ctx.state.compensating else "compensated"
    unlinked = ProviderUnlinked(
        originator_id=ctx.state.connection_id,
        originator_version=0,  # set against the fresh state below
        timestamp=ctx.now,
        metadata={"command_id": f"{ctx.command_prefix}:forget_token"},
        command_id=f"{ctx.command_prefix}:forget_token",
        provider=str(linked["provider"]),
        item_id=str(linked["item_id"]),
        reason=reason,
    )
    forgotten = CredentialForgotten(
        originator_id=uuid.UUID(str(linked["credential_id"])),
        originator_version=2,
        timestamp=ctx.now,
        metadata=unlinked.metadata,
        reason=reason,
    )

    def record(fresh: ConnectionState | None) -> list[Any]:
        # A link that replaced this saga's meanwhile is someone's live link: only
        # this saga's credential is forgotten, never the link that replaced it.
        held = fresh.links.get(unlinked.provider) if fresh is not None else None
        if fresh is None or held is None or held.credential_id != forgotten.originator_id:
            return []
        return [msgspec.structs.replace(unlinked, originator_version=fresh.version + 1)]

    return StepResult(connection=record, private=(forgotten,))


async def mark_connection_aborted(ctx: StepContext) -> StepResult:
    state = ctx.state
    compensating = state.compensating
    aborted = LinkAttemptAborted(
        originator_id=state.connection_id,
        originator_version=0,
        timestamp=ctx.now,
        metadata={"command_id": state.command_id},
        command_id=state.command_id,
        saga_id=str(state.id),
        provider=state.outputs.get("create_link", {}).get("provider"),
        step=compensating.step if compensating else "",
        reason=compensating.reason if compensating else "compensated",
    )

    def record(fresh: ConnectionState | None) -> list[Any]:
        if fresh is None:
            return []
        return [msgspec.structs.replace(aborted, originator_version=fresh.version + 1)]

    return StepResult(connection=record)


LINK_EXECUTORS: dict[str, Executor] = {
    "create_link": create_link,
    "exchange_token": exchange_token,
    "get_accounts": get_accounts,
    "sync_transactions": sync_transactions,
    "remove_item": remove_item,
    "forget_token": forget_token,
    "mark_connection_aborted": mark_connection_aborted,
}

"""The reconnect flow's steps: update mode at the provider that holds the token.

No failover here: the token is bound to its provider. When the person has
logged in again, `mark_usable` records the link afresh (ProviderLinked with
the same item and credential), which lifts `reauth_required`, and the first
sync runs. Nothing to undo: a reconnect that is abandoned leaves the link
set aside, as it was.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from events.connection import ProviderLinked
from sagas.link_steps import sync_transactions
from sagas.steps import Executor, StepContext, StepFailedError, StepResult
from services.connections.domain import ConnectionState
from services.connections.state import pair_key
from services.providers.base import LinkRequest, ProviderCallError
from services.providers.http import idempotency_key


async def create_update_link(ctx: StepContext) -> StepResult:
    params = ctx.state.params
    provider = str(params["provider"])
    link = await ctx.link(provider)
    if link is None:
        raise StepFailedError.from_message(
            "link_missing", f"the connection holds no link at {provider} to reconnect"
        )
    request = LinkRequest(
        user_ref=pair_key(ctx.state.space_id, ctx.state.account_id),
        webhook_url=params.get("webhook_url") or ctx.webhook_url,
        update_link=link,
    )
    try:
        with idempotency_key(ctx.key):
            token = await ctx.adapter(provider).create_link(
                request, timeout_s=ctx.deps.orchestrator.call_timeout_s
            )
    except ProviderCallError as exc:
        raise StepFailedError.from_provider(exc) from None
    output = {
        "provider": provider,
        "item_id": link.item_id,
        "link_token": token.token,
        "expires_at": token.expires_at,
    }
    return StepResult(output=output)


async def mark_usable(ctx: StepContext) -> StepResult:
    params = ctx.state.params
    command_id = f"{ctx.command_prefix}:mark_usable"
    relinked = ProviderLinked(
        originator_id=ctx.state.connection_id,
        originator_version=0,
        timestamp=ctx.now,
        metadata={"command_id": command_id},
        command_id=command_id,
        provider=str(params["provider"]),
        item_id=str(params["item_id"]),
        credential_id=uuid.UUID(str(params["credential_id"])),
    )

    def record(fresh: ConnectionState | None) -> list[Any]:
        # Recording the old credential over a link that replaced it meanwhile
        # would replace the new one (and shred its key) with a forgotten token.
        held = fresh.links.get(relinked.provider) if fresh is not None else None
        if fresh is None or held is None or held.credential_id != relinked.credential_id:
            return []
        return [msgspec.structs.replace(relinked, originator_version=fresh.version + 1)]

    return StepResult(output={"provider": relinked.provider}, connection=record)


RECONNECT_EXECUTORS: dict[str, Executor] = {
    "create_update_link": create_update_link,
    "mark_usable": mark_usable,
    "sync_transactions": sync_transactions,
}

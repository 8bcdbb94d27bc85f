"""Providers' webhooks about linked items: consent about to end, a login lost or repaired.

Not a link flow's webhook (those complete a saga: `sagas/commands.py`), but
the provider's word about an item some connection already holds. The HTTP
receivers (`infra/http/webhooks.py`, and the per-saga URL the item was linked
with) verify the provider's signature, then hand the normalised webhook here:
it is turned into an `ItemSignal` and decided on every connection holding the
item (`services/connections/signals.py`), each through the event store's
version check, so a webhook delivered twice, even at once to two replicas,
records its events once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from events.base import DomainEvent
from services.connections.signals import SIGNAL_KINDS, ItemSignal, decide_signal
from services.connections.state import ConnectionState
from services.dependencies import Dependencies
from services.ports import Change, LinkedItemsPort
from services.providers.base import WebhookEvent


def signal_of(event: WebhookEvent, body: bytes) -> ItemSignal | None:
    """The signal a verified webhook carries, or None when it is not about a held item's
    health (a link finished, new transactions, ...) or names no item."""
    kind = next((k for k in SIGNAL_KINDS if k == event.kind), None)
    if kind is None or not event.item_id:
        return None
    reason = event.raw.get("reason")
    return ItemSignal(
        provider=event.provider,
        item_id=event.item_id,
        kind=kind,
        code=event.error_code or event.kind,
        # The body, not the delivery: the same webhook sent again is the same reference.
        reference=f"webhook:{event.provider}:{hashlib.sha256(body).hexdigest()[:24]}",
        expires_at=event.expires_at,
        reason=reason if isinstance(reason, str) else None,
        issued_at=event.issued_at,
    )


async def receive_signal(
    deps: Dependencies, items: LinkedItemsPort, signal: ItemSignal
) -> dict[UUID, list[DomainEvent]]:
    """Decide `signal` on every connection holding its item; the events each recorded."""
    recorded: dict[UUID, list[DomainEvent]] = {}
    for connection_id in await items.connections_holding(signal.provider, signal.item_id):
        change = Change(connection_id=connection_id, decide=_deciding(signal, deps.now()))
        recorded[connection_id] = await deps.store.commit(change)
    return recorded


def _deciding(
    signal: ItemSignal, now: datetime
) -> Callable[[ConnectionState | None], list[DomainEvent]]:
    def decide(state: ConnectionState | None) -> list[DomainEvent]:
        return [] if state is None else decide_signal(state, signal, now=now)

    return decide

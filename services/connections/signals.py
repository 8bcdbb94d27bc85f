"""What a provider's own word about a linked item does to a connection: pure, no I/O.

A provider's webhook about an item (not about a link flow) says that the
person must log in again, that they did, or that their consent ends soon.
`decide_signal` turns one such signal into the connection's events, or into
nothing when the connection does not hold that item at that provider, or
when the connection already knows (a redelivered webhook records nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

import msgspec

from events.base import DomainEvent
from events.connection import ConsentExpiring, LoginRepaired, ReauthRequired
from services.connections.state import ConnectionState, ConsentNotice

SignalKind = Literal["consent_expiring", "login_required", "login_repaired"]
SIGNAL_KINDS: tuple[SignalKind, ...] = ("consent_expiring", "login_required", "login_repaired")


class ItemSignal(msgspec.Struct, frozen=True, kw_only=True):
    """A verified provider webhook about one item, in the connection's terms.

    `reference` names the webhook (`webhook:<provider>:<digest of its body>`):
    it goes in the events' `command_id`, so an auditor can tell which webhook
    said so, and the same body delivered twice carries the same reference.
    """

    provider: str
    item_id: str
    kind: SignalKind
    code: str
    reference: str
    expires_at: datetime | None = None
    reason: str | None = None


def decide_signal(
    state: ConnectionState, signal: ItemSignal, *, now: datetime
) -> list[DomainEvent]:
    """The events `signal` means for this connection (none when it changes nothing)."""
    link = state.links.get(signal.provider)
    if link is None or link.item_id != signal.item_id:
        return []  # an item this connection does not (or no longer) hold there
    event = _DECIDERS[signal.kind](state, signal, now)
    return [] if event is None else [event]


def _consent_expiring(
    state: ConnectionState, signal: ItemSignal, now: datetime
) -> DomainEvent | None:
    notice = ConsentNotice(item_id=signal.item_id, code=signal.code, expires_at=signal.expires_at)
    if state.consent_expiring.get(signal.provider) == notice:
        return None  # this notice was recorded already
    return ConsentExpiring(
        originator_id=state.id,
        originator_version=state.version + 1,
        timestamp=now,
        metadata={"command_id": signal.reference},
        command_id=signal.reference,
        provider=signal.provider,
        item_id=signal.item_id,
        code=signal.code,
        expires_at=signal.expires_at,
        reason=signal.reason,
    )


def _login_required(
    state: ConnectionState, signal: ItemSignal, now: datetime
) -> DomainEvent | None:
    if signal.provider in state.reauth:
        return None
    return ReauthRequired(
        originator_id=state.id,
        originator_version=state.version + 1,
        timestamp=now,
        metadata={"command_id": signal.reference},
        command_id=signal.reference,
        provider=signal.provider,
        item_id=signal.item_id,
        error_code=signal.code,
    )


def _login_repaired(
    state: ConnectionState, signal: ItemSignal, now: datetime
) -> DomainEvent | None:
    if signal.provider not in state.reauth:
        return None  # nothing to repair: the link was never (or is no longer) set aside
    return LoginRepaired(
        originator_id=state.id,
        originator_version=state.version + 1,
        timestamp=now,
        metadata={"command_id": signal.reference},
        command_id=signal.reference,
        provider=signal.provider,
        item_id=signal.item_id,
        code=signal.code,
    )


_DECIDERS: dict[
    SignalKind, Callable[[ConnectionState, ItemSignal, datetime], DomainEvent | None]
] = {
    "consent_expiring": _consent_expiring,
    "login_required": _login_required,
    "login_repaired": _login_repaired,
}

"""What a provider's own word about a linked item does to a connection: pure, no I/O.

A provider's webhook about an item (not about a link flow) says that the
person must log in again, that they did, or that their consent ends soon.
`decide_signal` turns one such signal into the connection's events, or into
nothing when the connection does not hold that item at that provider, or
when the connection already knows (a redelivered webhook records nothing).

A "login required" the provider signed before the link's login was last
repaired (`LoginRepaired`, as recorded) is stale and changes nothing: a late
resend of it must not set aside the repaired link (a link set aside is not
synced, so no sync would show it works; only a new repair would bring it
back). Only a signed issue time can tell (Plaid's `iat`, whole seconds, so
only a signal signed in an earlier second than the repair counts as before
it); where the provider signs no time (MX, Belvo), the signal is taken as
new. Erring the other way is cheap: a genuine "login required" taken as
stale leaves the link in use, and its next sync's error sets it aside.
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
    `issued_at` is when the provider signed it, when its signature says.
    """

    provider: str
    item_id: str
    kind: SignalKind
    code: str
    reference: str
    expires_at: datetime | None = None
    reason: str | None = None
    issued_at: datetime | None = None


def is_stale(state: ConnectionState, signal: ItemSignal) -> bool:
    """A "login required" signed in a second before the link's login was last repaired."""
    repaired = state.login_repaired_at.get(signal.provider)
    if signal.kind != "login_required" or signal.issued_at is None or repaired is None:
        return False
    # Signed times are whole seconds: a signal of the repair's own second may be after it.
    return signal.issued_at < repaired.replace(microsecond=0)


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
    if signal.provider in state.reauth or is_stale(state, signal):
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

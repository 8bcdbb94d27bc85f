"""Events of the `ProviderBreaker` aggregate: one circuit breaker per provider, region and
institution, plus one per provider and region for failures that are the provider's own.

Every replica reads these from the event store, so ten workers see one breaker
and an auditor can answer "why was MX skipped at 10:32". `institution_id` is
syncyard's id of the bank a breaker covers; None is the provider-wide breaker
(and every breaker recorded before breakers were kept per bank).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from events.base import DomainEvent, Message

# Why a breaker opened: the calls that failed, or what the provider publishes
# about its own health (Plaid's institution status) before any call failed.
OpenSource = Literal["calls", "provider_status"]
# Whose trouble a status-opened breaker is: the provider's (a link elsewhere
# helps), or the bank's (every provider of that bank fails alike).
StatusBlame = Literal["provider", "institution"]


class CountedCall(Message, frozen=True, kw_only=True):
    """One call that counted towards opening the breaker."""

    notification_id: int
    command_id: str
    at: datetime
    outcome: str
    error_code: str | None
    response_time_ms: float


class ProviderStatusReport(Message, frozen=True, kw_only=True):
    """What the provider said about one product at one institution (Plaid's
    `/institutions/get_by_id` status: `item_logins`, `transactions_updates`)."""

    product: str
    status: str
    success: float | None = None
    error_provider: float | None = None
    error_institution: float | None = None


class BreakerOpened(DomainEvent, frozen=True, kw_only=True):
    """Calls to the provider (at this institution) in this region stop until `open_until`.

    `reason` names the threshold that tripped; `calls` are the calls that did it.
    `source` says whether failed calls opened it or the provider's own status
    (then `status` holds what the provider reported and `blame` whose trouble
    it reported: the provider's or the bank's).
    """

    provider: str
    region: str
    reason: str
    open_until: datetime
    calls: list[CountedCall] = []
    institution_id: str | None = None
    source: OpenSource = "calls"
    blame: StatusBlame | None = None
    status: list[ProviderStatusReport] = []


class BreakerHalfOpened(DomainEvent, frozen=True, kw_only=True):
    """The open timeout passed: a limited number of probe calls may go through."""

    provider: str
    region: str
    institution_id: str | None = None


class BreakerProbeAdmitted(DomainEvent, frozen=True, kw_only=True):
    """One replica won the right to send the next probe call; the others keep skipping."""

    provider: str
    region: str
    # The probing command, scoped by its space (`demo/sync-1`, as its `Nats-Msg-Id`);
    # a bare command id in probes admitted before command ids were per space.
    command_id: str
    institution_id: str | None = None


class BreakerClosed(DomainEvent, frozen=True, kw_only=True):
    """Enough probes succeeded: the provider takes calls again."""

    provider: str
    region: str
    successes: int
    institution_id: str | None = None


ForcedState = Literal["open", "closed"]


class BreakerForced(DomainEvent, frozen=True, kw_only=True):
    """An operator holds the breaker open (no calls) or closed (calls whatever fails)
    until `until`, or until released; what the calls show meanwhile changes nothing.

    resilience4j's `transitionToForcedOpenState` / `DISABLED`, Polly's `Isolate()`.
    """

    provider: str
    region: str
    state: ForcedState
    actor: str
    reason: str
    until: datetime
    command_id: str
    institution_id: str | None = None
    # The command's space: command ids are unique only within one (None: recorded
    # before holds named it).
    space_id: str | None = None


class BreakerReleased(DomainEvent, frozen=True, kw_only=True):
    """The operator's hold ended (released by a command, or its expiry passed): the
    breaker is closed again with a fresh count, as after Polly's `Reset()`."""

    provider: str
    region: str
    actor: str
    reason: str
    command_id: str | None = None  # None: the hold's expiry ended it
    institution_id: str | None = None
    space_id: str | None = None  # the command's space, as on BreakerForced


BREAKER_EVENT_TYPES = (
    BreakerOpened,
    BreakerHalfOpened,
    BreakerProbeAdmitted,
    BreakerClosed,
    BreakerForced,
    BreakerReleased,
)

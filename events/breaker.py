"""Events of the `ProviderBreaker` aggregate: one circuit breaker per provider and region.

Every replica reads these from the event store, so ten workers see one breaker
and an auditor can answer "why was MX skipped at 10:32".
"""

from __future__ import annotations

from datetime import datetime

from events.base import DomainEvent, Message


class CountedCall(Message, frozen=True, kw_only=True):
    """One call that counted towards opening the breaker."""

    notification_id: int
    command_id: str
    at: datetime
    outcome: str
    error_code: str | None
    response_time_ms: float


class BreakerOpened(DomainEvent, frozen=True, kw_only=True):
    """Calls to the provider in this region stop until `open_until`.

    `reason` names the threshold that tripped; `calls` are the calls that did it.
    """

    provider: str
    region: str
    reason: str
    open_until: datetime
    calls: list[CountedCall] = []


class BreakerHalfOpened(DomainEvent, frozen=True, kw_only=True):
    """The open timeout passed: a limited number of probe calls may go through."""

    provider: str
    region: str


class BreakerProbeAdmitted(DomainEvent, frozen=True, kw_only=True):
    """One replica won the right to send the next probe call; the others keep skipping."""

    provider: str
    region: str
    command_id: str


class BreakerClosed(DomainEvent, frozen=True, kw_only=True):
    """Enough probes succeeded: the provider takes calls again."""

    provider: str
    region: str
    successes: int


BREAKER_EVENT_TYPES = (
    BreakerOpened,
    BreakerHalfOpened,
    BreakerProbeAdmitted,
    BreakerClosed,
)

"""Events of the `Connection` aggregate: one per account connection.

None of these carries an access token: links refer to their credential by id
(`credential_id`), and the credential lives in its own, never-published stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from events.base import DomainEvent, Message
from events.errors import Blame, ErrorInfo
from events.feed import FeedAppended

# "cancelled": a hedged call that lost the race; it says nothing about the provider.
AttemptOutcome = Literal["success", "failure", "timeout", "cancelled"]


class ProviderRanking(Message, frozen=True, kw_only=True):
    """How one decision ordered its providers, and the live scores it compared.

    `directory` is the order before health: the preferred provider, then the
    institution's mapping (or the region's hierarchy). `order` is the order
    tried: the first provider in `directory` whose live score (0-100, the
    health score of `GET /v1/providers/health`, over the last minutes) is
    within `margin` points of the best remaining score goes next, so a
    provider is passed over only when another is clearly healthier, not for
    noise (services/failover.py, `rank_by_health`).
    """

    directory: tuple[str, ...]
    order: tuple[str, ...]
    scores: dict[str, int]
    margin: int


class ConnectionRegistered(DomainEvent, frozen=True, kw_only=True):
    """The first command for an account created its connection."""

    space_id: str
    account_id: str
    institution_id: str | None
    region: str


class ProviderLinked(DomainEvent, frozen=True, kw_only=True):
    """The connection now holds an active link at `provider`.

    When it replaces a link the connection held at that provider with another
    credential (a new token for the same provider), `replaces_credential_id`
    and `replaces_item_id` name the link it replaced: that credential is
    forgotten in the same transaction and its data key destroyed, so the old
    token can never be read again.
    """

    command_id: str
    provider: str
    item_id: str
    credential_id: UUID
    replaces_credential_id: UUID | None = None
    replaces_item_id: str | None = None


class ConnectionAttempted(DomainEvent, frozen=True, kw_only=True):
    """One call to one provider on behalf of one command, and how it went."""

    command_id: str
    op: str
    provider: str
    region: str
    attempt: int
    failover: bool
    outcome: AttemptOutcome
    response_time_ms: float
    error_code: str | None = None
    error_message: str | None = None
    error_type: str | None = None
    # The connection's institution (syncyard's id), whose breaker at `provider` the
    # call counts towards; None: only the provider-wide breaker's.
    institution_id: str | None = None
    # Whose failure it was (events/errors.py); None in events recorded before
    # it existed, read by `error_type` then.
    blame: Blame | None = None
    # The command's space: command ids are unique only within one, so a breaker
    # tells its probes apart by both. None in events recorded before it existed.
    space_id: str | None = None


class ProviderFailed(DomainEvent, frozen=True, kw_only=True):
    """A provider answered a call with an error (classified)."""

    command_id: str
    op: str
    provider: str
    region: str
    error: ErrorInfo
    response_time_ms: float


class SyncCompleted(DomainEvent, frozen=True, kw_only=True):
    """A command finished successfully; `summary` is what the result reported."""

    command_id: str
    op: str
    provider: str
    failover_used: bool
    attempts: int
    response_time_ms: float
    summary: dict[str, Any] = {}
    # The providers compared and their live scores, when there was a choice.
    ranking: ProviderRanking | None = None


class SyncFailed(DomainEvent, frozen=True, kw_only=True):
    """A command ended without success; `error` is what the result reported."""

    command_id: str
    op: str
    provider: str | None
    failover_used: bool
    attempts: int
    response_time_ms: float
    error: ErrorInfo
    ranking: ProviderRanking | None = None


class SyncDeferred(DomainEvent, frozen=True, kw_only=True):
    """A command did not succeed in a way time can fix; it runs again at `resume_at`.

    `refused` says syncyard called no provider (a breaker open or probing, a
    rate limit, a full bulkhead, a known maintenance window): the command was
    made to wait, it did not fail, and `error` says what refused it. Otherwise
    a provider answered `error`.

    `command` is the command as received (sync commands carry no secrets), so
    a durable timer can send it again after a restart; `tries` counts the
    tries spent so far (a refusal spends none), `waits` the refusals so far,
    and `received_at` is the command's first receipt, from which its maximum
    age counts (absent in events recorded before it existed).
    """

    command_id: str
    op: str
    tries: int
    resume_at: datetime
    error: ErrorInfo
    command: dict[str, Any]
    refused: bool = False
    waits: int = 0
    received_at: datetime | None = None
    ranking: ProviderRanking | None = None


class ReauthRequired(DomainEvent, frozen=True, kw_only=True):
    """The person must log in again at `provider` (e.g. Plaid ITEM_LOGIN_REQUIRED).

    Syncs through that link stop being attempted until it is linked again
    (an update-mode link, or a new `connection.register`).
    """

    command_id: str
    provider: str
    item_id: str
    error_code: str


class ConsentExpiring(DomainEvent, frozen=True, kw_only=True):
    """The provider says the person's consent for the link at `provider` ends soon.

    Emitted once per notice (a redelivered webhook records nothing), ahead of
    time: the link still works until `expires_at` (when the provider says;
    Plaid's PENDING_DISCONNECT does not), and the person can renew it through
    `connection.reconnect` before it breaks. `code` is the provider's own
    (Plaid PENDING_EXPIRATION or PENDING_DISCONNECT, Belvo
    openfinance_consent_about_to_expire), `reason` its reason when it gives one.
    `command_id` names the webhook that said so (`webhook:<provider>:<digest>`).
    """

    command_id: str
    provider: str
    item_id: str
    code: str
    expires_at: datetime | None = None
    reason: str | None = None


class LoginRepaired(DomainEvent, frozen=True, kw_only=True):
    """The provider says the link at `provider` works again without a relink
    (Plaid LOGIN_REPAIRED, MX back to CONNECTED): syncs through it resume."""

    command_id: str
    provider: str
    item_id: str
    code: str


class MaintenanceDetected(DomainEvent, frozen=True, kw_only=True):
    """The institution is in maintenance at `provider`; `until` when the provider said."""

    command_id: str
    provider: str
    until: datetime | None
    error_code: str


class RelinkSuggested(DomainEvent, frozen=True, kw_only=True):
    """The only usable link has been down since `down_since`: link through `suggested_provider`.

    syncyard never pretends to fail over a token-bound sync; this tells upstream
    to ask the person to link the institution at a backup provider.
    """

    command_id: str
    failing_provider: str
    suggested_provider: str | None
    down_since: datetime


class ProviderUnlinked(DomainEvent, frozen=True, kw_only=True):
    """The link at `provider` was undone (a link saga's compensation); it is no longer used."""

    command_id: str
    provider: str
    item_id: str
    reason: str


class LinkAttemptAborted(DomainEvent, frozen=True, kw_only=True):
    """A link flow for this connection gave up at `step`; `saga_id` tells which."""

    command_id: str
    saga_id: str
    provider: str | None
    step: str
    reason: str


CONNECTION_EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    ConnectionRegistered,
    FeedAppended,
    ProviderLinked,
    ConnectionAttempted,
    ProviderFailed,
    SyncCompleted,
    SyncFailed,
    SyncDeferred,
    ReauthRequired,
    MaintenanceDetected,
    RelinkSuggested,
    ProviderUnlinked,
    LinkAttemptAborted,
    ConsentExpiring,
    LoginRepaired,
)

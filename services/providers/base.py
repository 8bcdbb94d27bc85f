"""The provider port: what the orchestrator needs from every provider adapter."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from events.errors import ErrorInfo, ErrorType

# Classes of trouble at the provider (or between us and it): a link at another
# provider does not share it, so failing over can help. The others are ours
# (validation, our credentials) or the person's login, and go wherever we go,
# unless an error table says otherwise for one code.
FAILOVER_TYPES: frozenset[ErrorType] = frozenset(
    {"provider_down", "maintenance", "rate_limit", "network"}
)


# The error code of a completion whose public token names another person's link.
COMPLETION_NOT_FOR_THIS_PERSON = "completion_not_for_this_person"


class LinkCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """A connection's link at one provider: what a call needs to reach the item."""

    provider: str
    item_id: str
    access_token: str
    # Where this link's transaction sync stands: syncyard keeps it per link, so a
    # sync that fails over resumes the backup from the backup's own cursor.
    cursor: str | None = None

    def __repr__(self) -> str:
        return (
            f"LinkCredentials(provider={self.provider!r}, item_id={self.item_id!r}, "
            f"access_token='***', cursor={self.cursor!r})"
        )

    __str__ = __repr__


class AccountsPage(msgspec.Struct, frozen=True, kw_only=True):
    """Accounts normalised to one shape whichever provider answered.

    Each account: account_id, name, type, subtype, mask, balances
    {current, available, iso_currency_code}.
    """

    accounts: list[dict[str, Any]]


# The keys of every normalised transaction, whichever adapter made it (see README.md):
# transaction_id, account_id (the provider's ids), amount (money out is positive),
# iso_currency_code, date (ISO: the posted date, or the authorised date while
# pending), authorized_date (or None), name (the provider's description),
# merchant_name (or None), pending, and pending_transaction_id: the provider id of
# the pending transaction a posted one replaces (Plaid), None where a posting keeps
# the pending one's id (MX, Finicity, Belvo) or nothing was pending.
TRANSACTION_KEYS = frozenset(
    {
        "transaction_id",
        "account_id",
        "amount",
        "iso_currency_code",
        "date",
        "authorized_date",
        "name",
        "merchant_name",
        "pending",
        "pending_transaction_id",
    }
)


class TransactionsPage(msgspec.Struct, frozen=True, kw_only=True):
    """One incremental page: what changed since `cursor`, and where to go on from.

    `added` and `modified` hold normalised transactions (`TRANSACTION_KEYS`);
    `removed` the provider ids of transactions gone (withdrawn, or, at Plaid,
    a pending one that posted under a new id).
    """

    added: list[dict[str, Any]]
    modified: list[dict[str, Any]]
    removed: list[str]
    next_cursor: str
    has_more: bool


class ProviderCallError(Exception):
    """A provider call that failed, already classified into our taxonomy.

    The message is safe to log: adapters never put tokens or secrets in it.
    `failover_helps` says whether a link at another provider can serve the
    call; left out, it follows the error's type (`FAILOVER_TYPES`).
    `restarts_pagination` says the pages walked so far are void: the provider
    wants the walk redone from its first cursor.
    """

    def __init__(
        self,
        error: ErrorInfo,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        reauth_required: bool = False,
        failover_helps: bool | None = None,
        restarts_pagination: bool = False,
    ) -> None:
        super().__init__(f"{error.provider}: {error.type}/{error.code}: {error.message}")
        self.error = error
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.reauth_required = reauth_required
        self.failover_helps = (
            error.type in FAILOVER_TYPES if failover_helps is None else failover_helps
        )
        self.restarts_pagination = restarts_pagination


class HealthStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The provider's own word on whether it is up (its status endpoint, where it has one)."""

    healthy: bool
    latency_ms: float
    detail: str = ""


class LinkRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a link flow asks a provider for.

    `user_ref` is our opaque, stable id for the person (never PII);
    `update_link` set means update mode: re-authenticate an existing link.
    """

    user_ref: str
    institution_id: str | None = None
    products: tuple[str, ...] = ("transactions",)
    country_codes: tuple[str, ...] = ("US",)
    language: str = "en"
    webhook_url: str | None = None
    redirect_uri: str | None = None
    update_link: LinkCredentials | None = None


class LinkToken(msgspec.Struct, frozen=True, kw_only=True):
    """A token (or widget URL) the person's app opens to link, and when it expires."""

    token: str
    expires_at: str | None = None
    url: str | None = None
    request_id: str | None = None


class Institution(msgspec.Struct, frozen=True, kw_only=True):
    institution_id: str
    name: str
    country_codes: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    url: str | None = None


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A verified webhook, normalised: which item, what happened, and the raw body.

    `kind` is one of: public_token (a link finished; `public_token` set),
    transactions_updated, login_required (the person must log in again),
    login_repaired (they did, elsewhere), consent_expiring (the person's
    consent ends soon: `expires_at` when the provider says, `error_code` the
    provider's code for the notice), item_error, item_removed, other.
    `link_token` names the link session the webhook is about, for providers
    whose webhooks say (Plaid's LINK webhooks): a signature covers the body,
    not the URL it was posted to, so the receiver must check it is its own.
    `event_id` names this webhook for deduplication: the provider's own id
    where the verified bytes carry one (Finicity's `eventId`, Belvo's
    `webhook_id`), else a digest of what was signed or authenticated
    (`digest_event_id`); None only for webhooks that change nothing.
    `issued_at` is when the provider signed it, where the signature covers a
    time (Plaid's JWT `iat`, whole seconds); None where nothing signed says.
    """

    provider: str
    kind: str
    item_id: str | None = None
    public_token: str | None = None
    link_token: str | None = None
    error_code: str | None = None
    expires_at: datetime | None = None
    event_id: str | None = None
    issued_at: datetime | None = None
    raw: dict[str, Any] = {}


def digest_event_id(signed: bytes) -> str:
    """A webhook's id for deduplication when its provider sends none: the signed bytes' SHA-256."""
    return "sha256:" + hashlib.sha256(signed).hexdigest()


def webhook_time(value: object) -> datetime | None:
    """A time a webhook body carries (ISO 8601, `Z` or an offset), or None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class WebhookRejectedError(Exception):
    """A webhook whose signature is missing, forged or stale; the reason is safe to log."""


class ProviderAdapter(abc.ABC):
    """One provider's real HTTP API behind syncyard's operations.

    Every call takes `timeout_s` (the caller's remaining deadline, capped by
    the provider's own timeout) and raises ProviderCallError, classified,
    on any failure.
    """

    name: str

    @abc.abstractmethod
    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        """Fetch accounts and balances."""

    @abc.abstractmethod
    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        """Fetch one page of changes since `cursor`."""

    @abc.abstractmethod
    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        """Ask the provider whether it is up, without touching any person's data."""

    @abc.abstractmethod
    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        """Start linking (or, with `update_link`, re-authenticating) an institution."""

    @abc.abstractmethod
    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        """Trade the link flow's public token for a long-lived item id and access token."""

    async def belongs_to(
        self, public_token: str, *, user_ref: str, timeout_s: float
    ) -> bool | None:
        """Whether the provider-side user, customer or link `public_token` names was made
        for the person `user_ref` (True / False), or None where the provider itself binds
        its public tokens to the link session that issued them (Plaid: the token is
        handed only to that session, and its webhooks say which session by link token).

        Adapters whose public token is a bare id (MX, Finicity, Belvo) must override
        it: an id says nothing about who finished the link, and anyone who learned
        another person's ids could otherwise attach that person's bank login.
        """
        return None

    async def exchange_token_for(
        self, public_token: str, *, user_ref: str, timeout_s: float
    ) -> LinkCredentials:
        """`exchange_token`, refused when the token names another person's link.

        The link flow exchanges through here (the person's `link.complete` and the
        provider's webhook alike), so a completion carrying someone else's ids gets
        no credential: a validation error, never retried, and the flow aborts.
        """
        if await self.belongs_to(public_token, user_ref=user_ref, timeout_s=timeout_s) is False:
            raise ProviderCallError(
                ErrorInfo(
                    code=COMPLETION_NOT_FOR_THIS_PERSON,
                    message="the public token names a link made for another person",
                    type="validation",
                    retryable=False,
                    provider=self.name,
                ),
                failover_helps=False,
            )
        return await self.exchange_token(public_token, timeout_s=timeout_s)

    @abc.abstractmethod
    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        """Delete the item at the provider (a saga's compensation); idempotent."""

    @abc.abstractmethod
    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        """One institution by the provider's id."""

    @abc.abstractmethod
    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        """Institutions whose name matches `query`."""

    @abc.abstractmethod
    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        """Verify the provider's signature on a webhook and normalise it.

        Raises WebhookRejectedError when the signature is missing, forged or older
        than the provider's replay window (`now` is injected: epoch seconds).
        """

    async def aclose(self) -> None:  # noqa: B027 - adapters without resources need not override
        """Release connections; the shared HTTP session is closed by its owner."""

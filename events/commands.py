"""Commands: orders sent to syncyard on `syncyard.cmd.<op>` or `syncyard.rpc.<op>`."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from events.base import CommandId, Identifier, Message, ProviderName, Region

SecretToken = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]

# The command fields typed SecretToken: never logged, published or dead-lettered
# (tests/unit/test_secret_fields.py keeps this list complete).
SECRET_FIELDS = frozenset({"access_token", "public_token"})


class Command(Message, frozen=True, kw_only=True):
    """Fields every command carries.

    `deadline` is absolute (UTC): the command is not worth finishing after it,
    however many hops it takes to get there.
    """

    op: ClassVar[str]
    command_id: CommandId
    space_id: Identifier
    account_id: Identifier
    institution_id: Identifier | None = None
    region: Region = "US"
    preferred_provider: ProviderName | None = None
    deadline: datetime | None = None


class RegisterConnection(Command, frozen=True, kw_only=True):
    """Attach an existing provider link (item id and access token) to a connection.

    A connection may hold links at several providers; registering a second
    provider makes it multi-homed, which is what lets syncs fail over.
    """

    op: ClassVar[str] = "connection.register"
    provider: ProviderName
    item_id: Identifier
    access_token: SecretToken

    def __repr__(self) -> str:
        # The access token must never reach a log line or an exception message.
        return (
            f"RegisterConnection(command_id={self.command_id!r}, account_id={self.account_id!r}, "
            f"provider={self.provider!r}, item_id={self.item_id!r}, access_token='***')"
        )

    __str__ = __repr__


class SyncTransactions(Command, frozen=True, kw_only=True):
    """Bring the account's feed up to date from the link syncyard chooses.

    syncyard keeps every link's provider cursor (contract v2): the caller names
    only the account. The sync pages the chosen link until the provider has no
    more, up to a bound per command (the result's `has_more` says to send
    another). `count` is the page size asked of the provider. A v1 command's
    `cursor`, `start_date` and `end_date` are dropped when it is read
    (`events/codec.py`).
    """

    op: ClassVar[str] = "sync.transactions"
    count: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


class ReadFeed(Command, frozen=True, kw_only=True):
    """The account's feed entries after position `since`, at most `limit` of them.

    Answered from what syncyard recorded, never by calling a provider: a caller
    that missed a result, or restarted, catches up from its last position.
    """

    op: ClassVar[str] = "feed.read"
    since: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class GetAccounts(Command, frozen=True, kw_only=True):
    """Fetch the accounts (and balances) behind a connection."""

    op: ClassVar[str] = "accounts.get"


class CreateLink(Command, frozen=True, kw_only=True):
    """Start linking the institution for this account: a link token for the person's app.

    Fails over freely along the institution's providers (no token exists yet,
    so any of them will do); the result names the provider that answered.
    """

    op: ClassVar[str] = "link.create"
    products: tuple[Annotated[str, msgspec.Meta(max_length=32)], ...] = ("transactions",)
    country_codes: tuple[Annotated[str, msgspec.Meta(min_length=2, max_length=2)], ...] = ("US",)
    webhook_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    redirect_uri: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class MapInstitution(Command, frozen=True, kw_only=True):
    """Set which providers serve an institution: `providers[0]` is the primary,
    the rest are backups in the order failover tries them.

    `actor` (who) and `reason` (why) are recorded with the change for audit.
    No account is involved: `account_id` defaults to a fixed name, so the
    worker, which orders commands by space and account, applies a space's
    mapping changes one at a time.
    """

    op: ClassVar[str] = "institution.map"
    account_id: Identifier = "institution-mapping"
    institution_id: Identifier
    region: Region
    providers: Annotated[tuple[ProviderName, ...], msgspec.Meta(max_length=16)]
    actor: Actor
    reason: Reason


class ForceBreaker(Command, frozen=True, kw_only=True):
    """Hold a breaker open (no calls to `provider` there) or closed (calls whatever
    fails) for `duration_s`, whatever the calls show; `release_breaker` ends it early.

    The breaker is `provider`'s in `region` at `institution_id` (syncyard's id),
    or its provider-wide one when `institution_id` is absent. `actor` and
    `reason` are recorded in the breaker's stream for audit.
    """

    op: ClassVar[str] = "breaker.force"
    account_id: Identifier = "breaker-control"
    provider: ProviderName
    state: Literal["open", "closed"]
    duration_s: Annotated[float, msgspec.Meta(gt=0, le=7 * 86_400)]
    actor: Actor
    reason: Reason


class ReleaseBreaker(Command, frozen=True, kw_only=True):
    """End an operator's hold on a breaker: it closes with a fresh count."""

    op: ClassVar[str] = "breaker.release"
    account_id: Identifier = "breaker-control"
    provider: ProviderName
    actor: Actor
    reason: Reason


class StartLink(Command, frozen=True, kw_only=True):
    """Link the institution for this account end to end (the link saga).

    Creates a link token (failing over freely along the institution's
    providers), waits for the person to finish (`link.complete` or the
    provider's webhook) until `link_deadline_s`, exchanges the public token,
    reads the accounts and runs the first sync. Ends in `LinkCompleted` or
    `LinkAborted` on `syncyard.evt.saga.*`; the saga id is in the result's data.
    """

    op: ClassVar[str] = "link.start"
    products: tuple[Annotated[str, msgspec.Meta(max_length=32)], ...] = ("transactions",)
    country_codes: tuple[Annotated[str, msgspec.Meta(min_length=2, max_length=2)], ...] = ("US",)
    webhook_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    redirect_uri: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    link_deadline_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] | None = None


class CompleteLink(Command, frozen=True, kw_only=True):
    """The person finished the link UI of the flow started by `link_command_id`.

    `public_token` is what the provider's UI handed back (absent for an
    update-mode reconnect, which issues none). It is kept encrypted and
    never published.
    """

    op: ClassVar[str] = "link.complete"
    link_command_id: CommandId
    public_token: SecretToken | None = None

    def __repr__(self) -> str:
        return (
            f"CompleteLink(command_id={self.command_id!r}, "
            f"link_command_id={self.link_command_id!r}, public_token='***')"
        )

    __str__ = __repr__


class ReconnectConnection(Command, frozen=True, kw_only=True):
    """Re-authenticate a link the provider set aside (update mode; no failover).

    `provider` defaults to the connection's link awaiting re-authentication.
    Syncs through it resume when the person finishes (`link.complete`, or
    the provider's webhook) before `link_deadline_s`.
    """

    op: ClassVar[str] = "connection.reconnect"
    provider: ProviderName | None = None
    webhook_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    link_deadline_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] | None = None


class ResumeSaga(Command, frozen=True, kw_only=True):
    """Resume the clean-up of a saga left in `needs_attention`, once its cause is fixed.

    `saga_command_id` is the command that started the saga (`link.start` or
    `connection.reconnect`); `note` says what the operator fixed, for the audit.
    """

    op: ClassVar[str] = "saga.resume"
    saga_command_id: CommandId
    note: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.op: cls
    for cls in (
        RegisterConnection,
        SyncTransactions,
        ReadFeed,
        GetAccounts,
        CreateLink,
        MapInstitution,
        StartLink,
        CompleteLink,
        ReconnectConnection,
        ResumeSaga,
        ForceBreaker,
        ReleaseBreaker,
    )
}

# Ops whose effect reaches every space: a breaker holds a provider for everyone,
# the institution mapping is shared. They run only when sent on the fleet-wide
# subject (`syncyard.cmd.<op>`, the operators' and the shared upstream login's),
# never on a space's subject, the only one a tenant's login may publish on.
FLEET_OPS = frozenset({MapInstitution.op, ForceBreaker.op, ReleaseBreaker.op})
SPACE_OPS = tuple(op for op in COMMAND_TYPES if op not in FLEET_OPS)


# What a dead letter keeps of its command: an allow-list, not a deny-list. A
# deny-list misses what it did not foresee (`accessToken`, an escaped key name,
# a token inside an array or an object); this keeps only fields the contract
# defines, minus its secrets and the URLs a caller sends (a query may carry a
# credential), and only plain values of them.
_NEVER_KEPT = SECRET_FIELDS | {"webhook_url", "redirect_uri"}
DEAD_LETTER_FIELDS = (
    frozenset({"op"} | {name for cls in COMMAND_TYPES.values() for name in cls.__struct_fields__})
    - _NEVER_KEPT
)
_MAX_KEPT_TEXT = 512
_MAX_KEPT_ITEMS = 16


def _plain(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= _MAX_KEPT_TEXT
    return value is None or isinstance(value, bool | int | float)


def _kept(value: Any) -> bool:
    """A string, number, boolean or null, or a short list of them: nothing nested."""
    if isinstance(value, list):
        return len(value) <= _MAX_KEPT_ITEMS and all(_plain(item) for item in value)
    return _plain(value)


def dead_letter_payload(data: bytes, *, max_bytes: int | None = None) -> str:
    """What a dead letter keeps of a command's bytes, as JSON text.

    A JSON object keeps its allow-listed fields (`DEAD_LETTER_FIELDS`) holding
    plain values, and the count of what was dropped; anything else (not JSON,
    cut short, not an object, over `max_bytes`) keeps only its length and a
    SHA-256, enough to match it with the sender's copy and nothing to read a
    secret from.
    """
    decoded = None
    if max_bytes is None or len(data) <= max_bytes:
        with contextlib.suppress(msgspec.DecodeError):
            decoded = msgspec.json.decode(data)
    if not isinstance(decoded, dict):
        digest = hashlib.sha256(data).hexdigest()
        return msgspec.json.encode({"unreadable_bytes": len(data), "sha256": digest}).decode()
    kept = {k: v for k, v in decoded.items() if k in DEAD_LETTER_FIELDS and _kept(v)}
    if dropped := len(decoded) - len(kept):
        kept["dropped_fields"] = dropped
    return msgspec.json.encode(kept).decode()

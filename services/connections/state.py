"""The `Connection` aggregate's state and the values its decisions take: no I/O."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any

import msgspec

from events.connection import ProviderRanking
from events.errors import ErrorInfo
from events.results import CommandResult
from services.reconciliation.feed import Planned, Recognised

# The commands remembered per connection: a redelivery or a resend (NATS drops
# no resent command: infra/streams.py) is recognised while it is among the
# connection's last 512, and runs again after that.
RECENT_COMMANDS_KEPT = 512
_NAMESPACE = uuid.UUID("5d3c2f7e-4a51-4be4-9a43-6f1c1a0b9e21")


def pair_key(first: str, second: str) -> str:
    """Two identifiers as one key, different for every different pair.

    Plain `first/second` collides as soon as a part may hold a "/" (identifiers
    may): space `acme/x` with account `y` and space `acme` with account `x/y`
    would share one connection, and one person's link, feed and tokens. But ids
    derived from it are stored: changing the derivation for every pair would
    orphan every stored connection and saga. So the old form is kept where it
    cannot collide, when neither part holds "/" (then the key has exactly one
    "/", and the pair is read back unambiguously), and only pairs holding "/"
    get a length-prefixed form, `v2/<len(first)>:<first>/<second>`: it has at
    least two "/", so it never equals an old key, and the length says where
    `first` ends. Such pairs' ids change once: any stored under the old,
    ambiguous id (possibly mixing two pairs) are not found again by this id.
    """
    if "/" not in first and "/" not in second:
        return f"{first}/{second}"
    return f"v2/{len(first)}:{first}/{second}"


@functools.lru_cache(maxsize=65536)
def connection_id_for(space_id: str, account_id: str) -> uuid.UUID:
    """One connection per account within a space, addressable without a lookup."""
    return uuid.uuid5(_NAMESPACE, f"connection/{pair_key(space_id, account_id)}")


def credential_id_for(space_id: str, command_id: str) -> uuid.UUID:
    """Deterministic, so a retried registration cannot store a second credential.

    Scoped by space: command ids are the sender's, unique only within its space,
    and two spaces' registrations must never share one credential stream.
    Stored links keep the id they were given, so the change orphans nothing.
    """
    return uuid.uuid5(_NAMESPACE, f"credential/{pair_key(space_id, command_id)}")


class Link(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    item_id: str
    credential_id: uuid.UUID


class ConsentNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's standing word that a link's consent ends soon (one per link)."""

    item_id: str
    code: str
    expires_at: datetime | None = None


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One provider call made by the orchestrator, as the aggregate records it."""

    provider: str
    failover: bool
    response_time_ms: float
    error: ErrorInfo | None = None
    timed_out: bool = False
    retry_after_s: float | None = None
    reauth_required: bool = False
    cancelled: bool = False  # a hedged call whose partner answered first
    # Whether a link at another provider can serve the call this error failed
    # (the error table's word, `ProviderCallError.failover_helps`).
    failover_helps: bool = False


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What `execute_with_failover` concluded for one command."""

    success: bool
    provider: str | None
    failover_used: bool
    attempts: tuple[Attempt, ...]
    response_time_ms: float
    data: dict[str, Any] | None = None
    summary: dict[str, Any] = {}
    error: ErrorInfo | None = None
    skipped: tuple[str, ...] = ()  # providers not called, with why (e.g. breaker open)
    # Providers syncyard refused to call (breaker, rate limit, bulkhead, known
    # maintenance): with no call made at all, the command waits and spends no try.
    refused: tuple[str, ...] = ()
    retry_after_s: float | None = None  # the provider's own word on when to come back
    ranking: ProviderRanking | None = (
        None  # how the providers were ordered, when there was a choice
    )

    @property
    def refused_without_call(self) -> bool:
        """Nobody was called because syncyard refused: a wait, not a failure."""
        return not self.success and not self.attempts and bool(self.refused)


class FeedDraft(msgspec.Struct, frozen=True, kw_only=True):
    """A sync's reconciled changes, planned against the feed as it stood at `base_position`."""

    provider: str
    cursor: str
    has_more: bool
    base_position: int
    entries: tuple[Planned, ...] = ()
    recognised: tuple[Recognised, ...] = ()
    held: tuple[str, ...] = ()  # pending ids whose removal waits for the update's end


class Deferral(msgspec.Struct, frozen=True, kw_only=True):
    """A command waiting to run again: tries spent, refusals waited, since when."""

    tries: int
    resume_at: datetime
    result: CommandResult
    waits: int = 0
    received_at: datetime | None = None


class ConnectionState(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    version: int
    space_id: str
    account_id: str
    institution_id: str | None
    region: str
    links: dict[str, Link] = {}
    # command id → the result it produced (without data), to answer redeliveries.
    recent_results: dict[str, CommandResult] = {}
    # command id → its pending deferral; gone once the command completes or fails.
    deferred: dict[str, Deferral] = {}
    # The health of each link, as the provider's answers showed it.
    reauth: frozenset[str] = frozenset()
    # provider → when the provider last said its link's login works again (LoginRepaired):
    # a "login required" it signed before then is about the old login.
    login_repaired_at: dict[str, datetime] = {}
    maintenance_until: dict[str, datetime] = {}
    down_since: dict[str, datetime] = {}
    relink_suggested: frozenset[str] = frozenset()
    # provider → the consent notice its link had: the same notice again is a redelivery.
    consent_expiring: dict[str, ConsentNotice] = {}
    # provider → its link's cursor: syncyard's, never the caller's (contract v2).
    cursors: dict[str, str] = {}
    # provider → pending ids its last walk removed before its update ended.
    held: dict[str, tuple[str, ...]] = {}
    # The last position of the account's feed (one per entry, only grows).
    feed_position: int = 0

    def usable_links(self, now: datetime) -> list[str]:
        """Providers worth calling: not awaiting re-authentication, not in maintenance."""
        return [
            provider
            for provider in self.links
            if provider not in self.reauth and now >= self.maintenance_until.get(provider, now)
        ]

    def tries_made(self, command_id: str) -> int:
        deferral = self.deferred.get(command_id)
        return deferral.tries if deferral else 0

    def waits_made(self, command_id: str) -> int:
        deferral = self.deferred.get(command_id)
        return deferral.waits if deferral else 0

    def received_at(self, command_id: str) -> datetime | None:
        """When a deferred command was first received; None for one not deferred yet."""
        deferral = self.deferred.get(command_id)
        return deferral.received_at if deferral else None

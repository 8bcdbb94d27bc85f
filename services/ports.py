"""Ports the services, read models and sagas depend on; infra/ provides the implementations."""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from typing import Any, Protocol, TypeAlias
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from eventsourcing.utils import get_topic

from events.base import DomainEvent
from events.commands import Command
from events.feed import FeedEntry
from services.connections.domain import ConnectionState
from services.providers.base import LinkCredentials
from services.reconciliation.feed import Known


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """A decision to apply to one connection at commit time.

    `decide` runs against the freshest state the store has, inside the commit,
    so two changes to one connection in one batch see each other.
    `side_events` (e.g. the credential of a new link) are saved in the same
    transaction, and only when `decide` returned events.
    """

    connection_id: UUID
    decide: Callable[[ConnectionState | None], list[DomainEvent]]
    side_events: Sequence[DomainEvent] = ()


class DeferralPort(abc.ABC):
    """Durable timers for commands that failed in a way time can fix."""

    @abc.abstractmethod
    async def defer(
        self, command: Command, *, tries: int, resume_at: datetime, waits: int = 0
    ) -> None:
        """Send `command` to the work queue again at `resume_at`, as try `tries + 1`.

        `waits` counts the refusals it has waited out (they spend no try), so
        each round has its own timer. Durable across restarts, and idempotent
        for one round: scheduling the same round again (a command redelivered
        after a crash) sets one timer.
        """


class FeedIndexPort(abc.ABC):
    """Which provider transaction is which syncyard transaction, for one account."""

    @abc.abstractmethod
    async def known(
        self,
        connection_id: UUID,
        *,
        upto_version: int,
        provider: str,
        provider_ids: Sequence[str],
        around: tuple[date, date] | None,
    ) -> list[Known]:
        """The rows that may match a page: `provider`'s `provider_ids`, and every
        provider's transactions dated within `around`. The index first takes in
        any feed event of the connection up to `upto_version` it has not yet."""

    @abc.abstractmethod
    async def record(self, connection_id: UUID, events: Sequence[DomainEvent]) -> None:
        """Index the feed events a sync just committed."""


class FeedReaderPort(abc.ABC):
    """The account's feed as recorded: never a provider call."""

    @abc.abstractmethod
    async def read(
        self, connection_id: UUID, *, since: int, limit: int, reached: int
    ) -> list[FeedEntry]:
        """Entries after position `since`, at most `limit`. `reached` is the position
        the connection has recorded: the read waits (briefly) until the feed's read
        model holds it, so an answer is never short of what was committed."""


class LinkedItemsPort(abc.ABC):
    """Which connections hold a provider's item: how a webhook about an item finds them."""

    @abc.abstractmethod
    async def connections_holding(self, provider: str, item_id: str) -> list[UUID]:
        """Every connection whose link at `provider` is `item_id` (one item may serve
        several accounts), as recorded up to when the question was asked."""


class StreamConflictError(Exception):
    """An append found its stream moved on (another writer got there first)."""


class EventStorePort(abc.ABC):
    @abc.abstractmethod
    async def get_connection(self, connection_id: UUID) -> ConnectionState | None:
        """The connection's state as this replica last knew it (may lag other replicas)."""

    @abc.abstractmethod
    async def events_after(self, stream_id: UUID, version: int) -> list[DomainEvent]:
        """A stream's events after `version`, in order (for indexes catching up)."""

    @abc.abstractmethod
    async def credentials(self, state: ConnectionState) -> list[LinkCredentials]:
        """The connection's links with their access tokens, in link order."""

    @abc.abstractmethod
    async def commit(self, change: Change) -> list[DomainEvent]:
        """Decide and durably record; returns the events recorded (empty: nothing to do).

        A commit that went in but whose answer was lost (the connection dropped)
        still returns its events: empty never means "someone else recorded mine".
        """

    @abc.abstractmethod
    async def append(self, events: Sequence[DomainEvent]) -> None:
        """Record events of other streams (a saga's) atomically, in the same group commits.

        StreamConflictError if one of their streams moved on meanwhile.
        """


# -- the event log ---------------------------------------------------------------
# Read models and sagas read the event store's notification log through this
# port; `infra/eventlog/reader.py` is the PostgreSQL implementation.

# A plain connection or one borrowed from a pool: both run queries the same way.
DbConnection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event, decoded, with its place in the log."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    event: DomainEvent


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """What one read saw: the last notification id in it, and the events asked for."""

    last_id: int
    notifications: list[Notification]
    scanned: int = 0  # rows read, decoded or not: a full page means more may be waiting
    # The highest version each stream reached in this page, decoded or not.
    versions: dict[UUID, int] = {}


def topic_of(cls: type[DomainEvent]) -> str:
    """The topic the store records an event class under (what readers filter on)."""
    return get_topic(cls)


class LogReader(Protocol):
    """Pages through the notification log in order, decoding only the topics asked for."""

    @property
    def channel(self) -> str:
        """The LISTEN channel the store NOTIFYs on each append."""

    async def read(
        self,
        conn: DbConnection,
        after: int,
        limit: int,
        topics: Collection[str] | None = None,
        *,
        upto: int | None = None,
    ) -> Page:
        """Up to `limit` notifications after `after` (and up to `upto`), decoding `topics`."""

    async def max_id(self, conn: DbConnection) -> int:
        """The last notification id recorded."""

    async def read_stream(self, conn: DbConnection, originator_id: UUID) -> list[Notification]:
        """Every event of one aggregate, in its version order."""

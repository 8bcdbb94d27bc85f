"""Ports the services depend on; infra/ provides the implementations."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from uuid import UUID

import msgspec

from events.base import DomainEvent
from services.connections.domain import ConnectionState
from services.providers.base import LinkCredentials


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


class EventStorePort(abc.ABC):
    @abc.abstractmethod
    async def get_connection(self, connection_id: UUID) -> ConnectionState | None:
        """The connection's state as this replica last knew it (may lag other replicas)."""

    @abc.abstractmethod
    async def credentials(self, state: ConnectionState) -> list[LinkCredentials]:
        """The connection's links with their access tokens, in link order."""

    @abc.abstractmethod
    async def commit(self, change: Change) -> list[DomainEvent]:
        """Decide and durably record; returns the events recorded (empty: nothing to do)."""

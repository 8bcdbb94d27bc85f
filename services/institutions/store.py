"""The event-store port the institution mapping writes through; infra/ implements it."""

from __future__ import annotations

import abc
from uuid import UUID

from events.base import DomainEvent


class InstitutionStore(abc.ABC):
    @abc.abstractmethod
    async def load(self, mapping_id: UUID) -> list[DomainEvent]:
        """Every event of one institution's stream so far, in order."""

    @abc.abstractmethod
    async def load_all(self) -> list[DomainEvent]:
        """Every institution event of every stream, in the order they were recorded."""

    @abc.abstractmethod
    async def append(self, events: list[DomainEvent]) -> bool:
        """Record `events`; False when their versions are taken (another writer won).

        A commit that went in but whose answer was lost is True: False never
        means "mine, recorded" (the mapping would be answered as a duplicate).
        """

"""A hand-written InstitutionStore: streams in a dict, with the version check of the real one."""

from __future__ import annotations

from uuid import UUID

from events.base import DomainEvent
from services.institutions.store import InstitutionStore


class InMemoryInstitutionStore(InstitutionStore):
    def __init__(self) -> None:
        self.streams: dict[UUID, list[DomainEvent]] = {}
        self.log: list[DomainEvent] = []
        self.appends = 0
        # Events another replica records just before our next append (a race lost).
        self.ahead_of_next_append: list[DomainEvent] = []

    async def load(self, mapping_id: UUID) -> list[DomainEvent]:
        return list(self.streams.get(mapping_id, []))

    async def load_all(self) -> list[DomainEvent]:
        return list(self.log)

    async def append(self, events: list[DomainEvent]) -> bool:
        self.appends += 1
        if self.ahead_of_next_append:
            theirs, self.ahead_of_next_append = self.ahead_of_next_append, []
            self._put(theirs)
        versions = {e.originator_id: len(self.streams.get(e.originator_id, [])) for e in events}
        for event in events:
            versions[event.originator_id] += 1
            if event.originator_version != versions[event.originator_id]:
                return False
        self._put(events)
        return True

    def _put(self, events: list[DomainEvent]) -> None:
        for event in events:
            self.streams.setdefault(event.originator_id, []).append(event)
            self.log.append(event)

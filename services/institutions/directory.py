"""The institution directory: an in-memory read side of the mapping aggregates.

Built from the store's institution events at start, then kept current with
`apply` (events this replica records) and `observe` (events any replica
recorded, read from the notification log); both ignore an event already
seen, so feeding the same event twice is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from events.base import DomainEvent
from events.institutions import INSTITUTION_EVENT_TYPES
from services.institutions.domain import InstitutionMapping, evolve


class InstitutionDirectory:
    """Institutions by our id, each with its region, name and ordered providers.

    `hierarchy` is the region's default order (Settings.hierarchy), used for an
    institution the directory does not know.
    """

    def __init__(self, hierarchy: Mapping[str, tuple[str, ...]]) -> None:
        self.hierarchy = dict(hierarchy)
        self._by_id: dict[str, InstitutionMapping] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def apply(self, events: Iterable[DomainEvent]) -> None:
        for event in events:
            self.observe(event)

    def observe(self, event: DomainEvent) -> None:
        """Fold one event in; events of other aggregates and stale ones are ignored."""
        if not isinstance(event, INSTITUTION_EVENT_TYPES):
            return
        current = self._by_id.get(event.institution_id)
        if current is not None and event.originator_version <= current.version:
            return
        state = evolve(current, event)
        if state is not None:
            self._by_id[state.institution_id] = state

    def get(self, institution_id: str) -> InstitutionMapping | None:
        return self._by_id.get(institution_id)

    def providers_for(self, institution_id: str | None, region: str) -> tuple[str, ...]:
        """Primary first, then backups: the institution's mapping, else its region's order.

        The mapping wins over `region`: it was chosen for this institution. An
        institution we do not know falls back to the region's hierarchy, and
        an unknown region to no preference at all.
        """
        mapping = self._by_id.get(institution_id) if institution_id else None
        if mapping is not None:
            return mapping.providers
        return self.hierarchy.get(region, ())

    def provider_institution_id(self, institution_id: str, provider: str) -> str | None:
        """The provider's own id for the institution, where the directory knows it."""
        mapping = self._by_id.get(institution_id)
        return mapping.provider_ids.get(provider) if mapping else None

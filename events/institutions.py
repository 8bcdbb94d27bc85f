"""Events of the `InstitutionMapping` aggregate: one per institution.

The mapping says which providers serve an institution, primary first, then
the backups in the order failover tries them. It starts from the seed file
and changes only by the `institution.map` command, so every change says who
made it and why. No event here carries a secret: provider ids of an
institution are public directory data.
"""

from __future__ import annotations

from events.base import DomainEvent


class InstitutionMappingSeeded(DomainEvent, frozen=True, kw_only=True):
    """The mapping as the seed file gave it, recorded once, the first time syncyard starts.

    `provider_ids` is each serving provider's own id for the institution (Plaid's
    `ins_...`, MX's code), which a link flow at that provider starts from.
    """

    institution_id: str
    name: str
    region: str
    providers: tuple[str, ...]
    provider_ids: dict[str, str] = {}
    source: str


class InstitutionMappingChanged(DomainEvent, frozen=True, kw_only=True):
    """Someone changed which providers serve an institution, and in what order.

    `old_providers` is empty when the institution was not mapped before.
    """

    command_id: str
    institution_id: str
    region: str
    old_providers: tuple[str, ...]
    new_providers: tuple[str, ...]
    actor: str
    reason: str
    # The command's space: command ids are unique only within one (None: recorded
    # before changes named it).
    space_id: str | None = None


INSTITUTION_EVENT_TYPES = (InstitutionMappingSeeded, InstitutionMappingChanged)

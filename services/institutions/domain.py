"""The `InstitutionMapping` aggregate: which providers serve an institution, in what order.

Pure decisions, no I/O: `decide_seed` and `decide_map` take the current state
(None for an institution not recorded yet) and injected facts (time, the
providers we know) and return events; `evolve` folds one event into the state.
A refused command raises `MappingRefusedError`, whose message is safe to send
back to the caller.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from functools import singledispatch

import msgspec

from events.base import DomainEvent
from events.commands import MapInstitution
from events.institutions import InstitutionMappingChanged, InstitutionMappingSeeded
from events.subjects import command_key

_NAMESPACE = uuid.UUID("5f3c1a7e-2b8d-4e61-9a0f-7c4d2e9b1a36")
# The changes remembered per institution, to recognise a resent command (NATS
# drops none: infra/streams.py); a resend older than the last 64 changes would
# reapply an old order, which the version check cannot catch.
RECENT_COMMANDS_KEPT = 64


def mapping_id_for(institution_id: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"institution/{institution_id}")


class MappingRefusedError(ValueError):
    """A mapping syncyard will not record; `code` names the rule it breaks."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InstitutionMapping(msgspec.Struct, frozen=True, kw_only=True):
    """One institution as its events built it."""

    id: uuid.UUID
    institution_id: str
    name: str
    region: str
    providers: tuple[str, ...]
    provider_ids: dict[str, str] = {}
    version: int = 0
    changed_by: str | None = None  # None: as seeded
    # The changes' commands (`command_key`), to recognise one sent again.
    recent_commands: tuple[str, ...] = ()

    def applied(self, space_id: str, command_id: str) -> bool:
        """Whether this command's change is recorded already."""
        known = self.recent_commands
        # A bare id: recorded before changes named their space.
        return command_key(space_id, command_id) in known or command_id in known


def check_providers(providers: tuple[str, ...], known: frozenset[str]) -> None:
    """Refuse an empty, repeated or unknown provider list, saying what is wrong."""
    if not providers:
        raise MappingRefusedError(
            "empty_providers", "an institution needs at least one provider (its primary)"
        )
    repeated = sorted(p for p, n in Counter(providers).items() if n > 1)
    if repeated:
        raise MappingRefusedError(
            "duplicate_providers",
            f"each provider may appear once; repeated: {', '.join(repeated)}",
        )
    unknown = [p for p in providers if p not in known]
    if unknown:
        raise MappingRefusedError(
            "unknown_provider",
            f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
        )


def decide_seed(
    state: InstitutionMapping | None,
    *,
    institution_id: str,
    name: str,
    region: str,
    providers: tuple[str, ...],
    provider_ids: dict[str, str],
    source: str,
    known: frozenset[str],
    now: datetime,
) -> list[DomainEvent]:
    """Record the seed file's mapping, once: after that, only commands change it."""
    if state is not None:
        return []
    check_providers(providers, known)
    return [
        InstitutionMappingSeeded(
            originator_id=mapping_id_for(institution_id),
            originator_version=1,
            timestamp=now,
            institution_id=institution_id,
            name=name,
            region=region,
            providers=providers,
            provider_ids=provider_ids,
            source=source,
        )
    ]


def decide_map(
    state: InstitutionMapping | None,
    cmd: MapInstitution,
    *,
    known: frozenset[str],
    now: datetime,
    trace: dict[str, str],
) -> list[DomainEvent]:
    """Change the order; nothing to record for a resent command or an unchanged order."""
    if state is not None and state.applied(cmd.space_id, cmd.command_id):
        return []
    check_providers(cmd.providers, known)
    if state is not None and state.region != cmd.region:
        raise MappingRefusedError(
            "region_mismatch",
            f"institution {cmd.institution_id!r} is in region {state.region}, not {cmd.region}; "
            "a mapping cannot move it",
        )
    if state is not None and state.providers == cmd.providers:
        return []
    return [
        InstitutionMappingChanged(
            originator_id=mapping_id_for(cmd.institution_id),
            originator_version=(state.version if state else 0) + 1,
            timestamp=now,
            metadata={**trace, "command_id": cmd.command_id},
            command_id=cmd.command_id,
            institution_id=cmd.institution_id,
            region=cmd.region,
            old_providers=state.providers if state else (),
            new_providers=cmd.providers,
            actor=cmd.actor,
            reason=cmd.reason,
            space_id=cmd.space_id,
        )
    ]


@singledispatch
def _apply(event: DomainEvent, state: InstitutionMapping | None) -> InstitutionMapping | None:
    return state  # not an event of this aggregate


@_apply.register
def _(event: InstitutionMappingSeeded, state: InstitutionMapping | None) -> InstitutionMapping:
    return InstitutionMapping(
        id=event.originator_id,
        institution_id=event.institution_id,
        name=event.name,
        region=event.region,
        providers=event.providers,
        provider_ids=dict(event.provider_ids),
        version=event.originator_version,
    )


@_apply.register
def _(event: InstitutionMappingChanged, state: InstitutionMapping | None) -> InstitutionMapping:
    base = state or InstitutionMapping(
        # First mapped by command: the id is the only name we have.
        id=event.originator_id,
        institution_id=event.institution_id,
        name=event.institution_id,
        region=event.region,
        providers=(),
    )
    return msgspec.structs.replace(
        base,
        providers=event.new_providers,
        version=event.originator_version,
        changed_by=event.actor,
        recent_commands=(
            *base.recent_commands,
            command_key(event.space_id, event.command_id),
        )[-RECENT_COMMANDS_KEPT:],
    )


def evolve(state: InstitutionMapping | None, event: DomainEvent) -> InstitutionMapping | None:
    return _apply(event, state)


def fold(
    state: InstitutionMapping | None, events: Iterable[DomainEvent]
) -> InstitutionMapping | None:
    for event in events:
        state = evolve(state, event)
    return state

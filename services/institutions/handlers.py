"""The `institution.map` handler: decide on the freshest stream, record, update the directory.

It reads what it needs through `InstitutionDeps`, a protocol that
`services.handlers.Dependencies` satisfies once it carries an `institutions`
field, so this module does not import the handler table that registers it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import msgspec

from events.commands import MapInstitution
from events.errors import ErrorInfo, ErrorType
from events.results import CommandResult
from services.institutions.directory import InstitutionDirectory
from services.institutions.domain import (
    InstitutionMapping,
    MappingRefusedError,
    decide_map,
    fold,
    mapping_id_for,
)
from services.institutions.store import InstitutionStore

# Mapping changes are rare and human-made: a few tries settle any race.
MAX_TRIES = 3


class Institutions(msgspec.Struct, frozen=True, kw_only=True):
    """What the mapping needs at run time: its store, the directory it keeps current,
    and every provider name a mapping may use (kinds we speak and names configured)."""

    store: InstitutionStore
    directory: InstitutionDirectory
    known_providers: frozenset[str]


class InstitutionDeps(Protocol):
    @property
    def institutions(self) -> Institutions | None: ...

    @property
    def now(self) -> Callable[[], datetime]: ...


def _failed(cmd: MapInstitution, code: str, message: str, kind: ErrorType) -> CommandResult:
    retryable = kind != "validation"
    return CommandResult(
        command_id=cmd.command_id,
        op=cmd.op,
        success=False,
        error=ErrorInfo(code=code, message=message, type=kind, retryable=retryable),
    )


def _answer(cmd: MapInstitution, state: InstitutionMapping, *, changed: bool) -> CommandResult:
    return CommandResult(
        command_id=cmd.command_id,
        op=cmd.op,
        success=True,
        data={
            "institution_id": state.institution_id,
            "region": state.region,
            "providers": list(state.providers),
            "version": state.version,
            "changed": changed,
        },
        duplicate=not changed and state.applied(cmd.space_id, cmd.command_id),
    )


async def map_institution(
    deps: InstitutionDeps, cmd: MapInstitution, trace: dict[str, str]
) -> CommandResult:
    """Set an institution's provider order; refused with a validation error when invalid."""
    institutions = deps.institutions
    if institutions is None:
        return _failed(
            cmd, "not_configured", "this syncyard keeps no institution mapping", "unknown"
        )
    mapping_id = mapping_id_for(cmd.institution_id)
    for _ in range(MAX_TRIES):
        state = fold(None, await institutions.store.load(mapping_id))
        try:
            events = decide_map(
                state, cmd, known=institutions.known_providers, now=deps.now(), trace=trace
            )
        except MappingRefusedError as exc:
            return _failed(cmd, exc.code, str(exc), "validation")
        if events and not await institutions.store.append(events):
            continue  # another replica changed it meanwhile: decide again on its result
        institutions.directory.apply(events)
        new_state = fold(state, events)
        assert new_state is not None  # decide_map refuses or records for a new institution
        return _answer(cmd, new_state, changed=bool(events))
    return _failed(
        cmd,
        "conflict",
        f"institution {cmd.institution_id!r} kept changing under this command; send it again",
        "unknown",
    )

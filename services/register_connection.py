"""`connection.register`: attach a provider link (and its encrypted token) to a connection."""

from __future__ import annotations

from typing import Any

from events.commands import (
    RegisterConnection,
)
from events.credentials import CredentialStored
from events.results import CommandResult
from services.connections.domain import (
    ConnectionState,
    as_duplicate,
    connection_id_for,
    credential_id_for,
    decide_register,
)
from services.dependencies import Dependencies, refused
from services.ports import Change


async def register_connection(
    deps: Dependencies, cmd: RegisterConnection, trace: dict[str, str]
) -> CommandResult:
    if cmd.provider not in deps.known_providers:
        known = ", ".join(sorted(deps.known_providers))
        return refused(
            cmd, "unknown_provider", f"unknown provider {cmd.provider!r}; known: {known}"
        )
    connection_id = connection_id_for(cmd.space_id, cmd.account_id)
    now = deps.now()
    credential = CredentialStored(
        originator_id=credential_id_for(cmd.space_id, cmd.command_id),
        originator_version=1,
        timestamp=now,
        metadata={"command_id": cmd.command_id},
        provider=cmd.provider,
        item_id=cmd.item_id,
        access_token=cmd.access_token,
    )

    def decide(state: ConnectionState | None) -> list[Any]:
        return decide_register(state, cmd, now=now, trace=trace)

    recorded = await deps.store.commit(
        Change(connection_id=connection_id, decide=decide, side_events=(credential,))
    )
    state = await deps.store.get_connection(connection_id)
    assert state is not None
    stored = state.recent_results[cmd.command_id]
    return stored if recorded else as_duplicate(stored)

"""What a command's provider answers say about each link: re-auth, maintenance, relink.

Pure: called by `decide_outcome` with the events' next version.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from events.base import DomainEvent
from events.commands import Command
from events.connection import MaintenanceDetected, ReauthRequired, RelinkSuggested
from services.connections.state import ConnectionState, Outcome

# Errors that mean "the provider (or institution) is not working", as opposed
# to "this request or this person's login is wrong".
OUTAGE_TYPES = frozenset({"network", "provider_down", "maintenance", "rate_limit", "unknown"})


class RelinkPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When the only usable link stays down this long, suggest linking elsewhere."""

    after: timedelta = timedelta(minutes=30)
    hierarchy: dict[str, tuple[str, ...]] = {}


def link_health_events(
    state: ConnectionState,
    cmd: Command,
    outcome: Outcome,
    *,
    now: datetime,
    meta: dict[str, str],
    first_version: int,
    relink: RelinkPolicy,
    giving_up: bool = False,
) -> list[DomainEvent]:
    """ReauthRequired, MaintenanceDetected and RelinkSuggested, as the answers call for.

    `giving_up`: the command ends now on an error time could have fixed, so a
    relink is suggested at once, without waiting for `relink.after`.
    """
    events: list[DomainEvent] = []

    def version() -> int:
        return first_version + len(events)

    for attempt in outcome.attempts:
        error, provider = attempt.error, attempt.provider
        if error is None:
            continue
        if attempt.reauth_required and provider not in state.reauth and provider in state.links:
            events.append(
                ReauthRequired(
                    originator_id=state.id,
                    originator_version=version(),
                    timestamp=now,
                    metadata=meta,
                    command_id=cmd.command_id,
                    provider=provider,
                    item_id=state.links[provider].item_id,
                    error_code=error.code,
                )
            )
        if error.type == "maintenance":
            until = (
                now + timedelta(seconds=attempt.retry_after_s) if attempt.retry_after_s else None
            )
            if until is None or state.maintenance_until.get(provider) != until:
                events.append(
                    MaintenanceDetected(
                        originator_id=state.id,
                        originator_version=version(),
                        timestamp=now,
                        metadata=meta,
                        command_id=cmd.command_id,
                        provider=provider,
                        until=until,
                        error_code=error.code,
                    )
                )
    suggestion = _relink(state, outcome, now, relink)
    if suggestion is not None:
        failing, suggested, since = suggestion
        events.append(
            RelinkSuggested(
                originator_id=state.id,
                originator_version=version(),
                timestamp=now,
                metadata=meta,
                command_id=cmd.command_id,
                failing_provider=failing,
                suggested_provider=suggested,
                down_since=since,
            )
        )
    elif giving_up and not outcome.success:
        events.extend(
            relink_on_giving_up(
                state, cmd, outcome, now=now, meta=meta, version=version(), relink=relink
            )
        )
    return events


def _relink(
    state: ConnectionState, outcome: Outcome, now: datetime, relink: RelinkPolicy
) -> tuple[str, str | None, datetime] | None:
    """(failing provider, provider to link through, down since), when it is time to say so."""
    error = outcome.error
    if outcome.success or error is None or error.type not in OUTAGE_TYPES:
        return None
    usable = [p for p in state.usable_links(now) if p not in _failed(outcome)]
    if usable or not outcome.attempts:
        return None
    failing = outcome.attempts[0].provider
    since = state.down_since.get(failing, now)
    if now - since < relink.after or failing in state.relink_suggested:
        return None
    hierarchy: Sequence[str] = relink.hierarchy.get(state.region, ())
    suggested = next((p for p in hierarchy if p not in state.links), None)
    return failing, suggested, since


def relink_on_giving_up(
    state: ConnectionState,
    cmd: Command,
    outcome: Outcome,
    *,
    now: datetime,
    meta: dict[str, str],
    version: int,
    relink: RelinkPolicy,
) -> list[DomainEvent]:
    """A sync ends on an error time could have fixed: name the link to replace.

    The failing link is the first one called, or else the first one refused;
    nothing is said twice for one provider.
    """
    failing = next(
        (a.provider for a in outcome.attempts if a.error is not None),
        outcome.refused[0] if outcome.refused else None,
    )
    if failing is None or failing in state.relink_suggested:
        return []
    hierarchy: Sequence[str] = relink.hierarchy.get(state.region, ())
    return [
        RelinkSuggested(
            originator_id=state.id,
            originator_version=version,
            timestamp=now,
            metadata=meta,
            command_id=cmd.command_id,
            failing_provider=failing,
            suggested_provider=next((p for p in hierarchy if p not in state.links), None),
            down_since=state.down_since.get(failing, now),
        )
    ]


def _failed(outcome: Outcome) -> set[str]:
    return {a.provider for a in outcome.attempts if a.error is not None}

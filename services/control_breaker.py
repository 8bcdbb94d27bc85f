"""`breaker.force` and `breaker.release`: an operator holds a breaker open or closed.

As resilience4j's `transitionToForcedOpenState` / `DISABLED` and Polly's
`Isolate()` / `Reset()`, but audited: the hold, who asked and why, and its end
are events in the breaker's own stream, which every replica follows.
"""

from __future__ import annotations

from typing import Any

from events.commands import ForceBreaker, ReleaseBreaker
from events.results import CommandResult
from services.dependencies import Dependencies, refused
from services.resilience.domain import Breaker


def _view(breaker: Breaker) -> dict[str, Any]:
    return {
        "breaker_id": str(breaker.id),
        "provider": breaker.provider,
        "region": breaker.region,
        "institution_id": breaker.institution_id,
        "state": breaker.status,
        "forced": breaker.forced,
        "forced_until": breaker.forced_until.isoformat() if breaker.forced_until else None,
    }


def _answer(cmd: ForceBreaker | ReleaseBreaker, breaker: Breaker, recorded: bool) -> CommandResult:
    """The breaker as it stands; a command recorded before is answered as a duplicate
    (the breaker's state now, which a later hold may have changed)."""
    duplicate = not recorded and breaker.applied(cmd.space_id, cmd.command_id)
    return CommandResult(
        command_id=cmd.command_id, op=cmd.op, success=True, data=_view(breaker), duplicate=duplicate
    )


async def force_breaker(
    deps: Dependencies, cmd: ForceBreaker, trace: dict[str, str]
) -> CommandResult:
    if deps.breakers is None:
        return refused(cmd, "no_breakers", "this process holds no breakers (not a worker)")
    if cmd.provider not in deps.known_providers:
        known = ", ".join(sorted(deps.known_providers))
        return refused(
            cmd, "unknown_provider", f"unknown provider {cmd.provider!r}; known: {known}"
        )
    breaker, recorded = await deps.breakers.force(
        cmd.provider,
        cmd.region,
        cmd.institution_id,
        state=cmd.state,
        duration_s=cmd.duration_s,
        actor=cmd.actor,
        reason=cmd.reason,
        command_id=cmd.command_id,
        space_id=cmd.space_id,
    )
    return _answer(cmd, breaker, recorded)


async def release_breaker(
    deps: Dependencies, cmd: ReleaseBreaker, trace: dict[str, str]
) -> CommandResult:
    if deps.breakers is None:
        return refused(cmd, "no_breakers", "this process holds no breakers (not a worker)")
    breaker, recorded = await deps.breakers.release(
        cmd.provider,
        cmd.region,
        cmd.institution_id,
        actor=cmd.actor,
        reason=cmd.reason,
        command_id=cmd.command_id,
        space_id=cmd.space_id,
    )
    return _answer(cmd, breaker, recorded)

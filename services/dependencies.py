"""What every command handler is given: the ports and policies it works with."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from events.commands import Command
from events.errors import ErrorInfo
from events.results import CommandResult
from services.connections.link_health import RelinkPolicy
from services.institutions.handlers import Institutions
from services.orchestrator import Orchestrator
from services.ports import DeferralPort, EventStorePort, FeedIndexPort, FeedReaderPort
from services.reconciliation.matcher import Tolerance
from services.resilience.board import BreakerBoard
from services.resilience.retry import DEFAULT_RETRY, DEFAULT_SYNC_MAX_AGE, RetryPolicy


class Dependencies(msgspec.Struct, frozen=True, kw_only=True):
    store: EventStorePort
    orchestrator: Orchestrator
    known_providers: frozenset[str]
    deferrals: DeferralPort
    feed_index: FeedIndexPort
    feed: FeedReaderPort
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    retry_policies: Mapping[str, RetryPolicy] = msgspec.field(default_factory=lambda: DEFAULT_RETRY)
    # A sync failing on errors time can fix is retried this long from its first receipt.
    sync_max_age: timedelta = DEFAULT_SYNC_MAX_AGE
    # A `link.create` every provider refused waits at most this long: the link
    # deadline, past which nobody is at the screen for the token.
    link_max_wait: timedelta = timedelta(minutes=30)
    rng: random.Random = msgspec.field(default_factory=random.Random)
    relink: RelinkPolicy = msgspec.field(default_factory=RelinkPolicy)
    institutions: Institutions | None = None
    # The replica's breakers, for operators' holds (`breaker.force` / `breaker.release`).
    breakers: BreakerBoard | None = None
    # How alike two providers' reports of one purchase must be (reconciliation).
    tolerance: Tolerance = msgspec.field(default_factory=Tolerance)
    # Fault injection for crash tests: called at named points of a sync
    # ("after_provider", "after_commit"); infra/bootstrap.py arms it from
    # SYNCYARD_SYNC_CRASH_AT. Unarmed, it does nothing.
    checkpoint: Callable[[str], None] = lambda _point: None


Handler = Callable[[Dependencies, Any, dict[str, str]], Awaitable[CommandResult]]


def refused(cmd: Command, code: str, message: str) -> CommandResult:
    """A command that names something syncyard does not have: nothing was done."""
    return CommandResult(
        command_id=cmd.command_id,
        op=cmd.op,
        success=False,
        error=ErrorInfo(code=code, message=message, type="validation", retryable=False),
    )

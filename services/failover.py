"""The bookkeeping of one command's walk down its candidate providers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from events.errors import ErrorInfo
from services.connections.domain import Attempt, Outcome
from services.providers.base import LinkCredentials

# A call's data and summary, its classified error, or None when it was not sent.
Answer = tuple[dict[str, Any], dict[str, Any]] | ErrorInfo | None

DEADLINE_EXCEEDED = ErrorInfo(
    code="deadline_exceeded",
    message="the command's deadline passed before a provider could answer",
    type="network",
    retryable=False,
)


class CallRun:
    """One command's walk down its candidate providers: what was tried and skipped."""

    def __init__(self, candidates: list[LinkCredentials], clock: Callable[[], float]) -> None:
        self.candidates = candidates
        self.clock = clock
        self.started = clock()
        self.attempts: list[Attempt] = []
        self.skipped: list[str] = []
        self.refused: list[str] = []  # providers syncyard itself would not call (no call made)
        self.waits: list[float] = []  # when skipped or failed providers said to come back
        self.last_error: ErrorInfo | None = None

    def finish(self, **fields: Any) -> Outcome:
        used = fields.get("provider")
        return Outcome(
            retry_after_s=min(self.waits) if self.waits else None,
            attempts=tuple(self.attempts),
            response_time_ms=(self.clock() - self.started) * 1000.0,
            failover_used=used is not None and used != self.candidates[0].provider,
            skipped=tuple(self.skipped),
            refused=tuple(self.refused),
            **fields,
        )


def order_links(
    links: Sequence[LinkCredentials], preferred: str | None, hierarchy: Sequence[str]
) -> list[LinkCredentials]:
    """Preferred provider first, then the region's hierarchy, then link order."""
    rank = {name: i for i, name in enumerate(hierarchy)}

    def key(indexed: tuple[int, LinkCredentials]) -> tuple[int, int, int]:
        index, link = indexed
        return (0 if link.provider == preferred else 1, rank.get(link.provider, len(rank)), index)

    return [link for _, link in sorted(enumerate(links), key=key)]


def exhausted_error(
    last: ErrorInfo | None,
    candidates: Sequence[LinkCredentials],
    attempts: Sequence[Attempt],
    skipped: Sequence[str],
) -> ErrorInfo:
    if candidates and not attempts and skipped:
        return ErrorInfo(
            code="all_providers_unavailable",
            message="no linked provider can be called now: " + "; ".join(skipped),
            type="provider_down",
            retryable=True,
        )
    if not candidates:
        return ErrorInfo(
            code="no_link",
            message="the connection holds no provider link; register one first",
            type="validation",
            retryable=False,
        )
    assert last is not None
    if len(candidates) == 1:
        reason = (
            f"{last.message}; no failover: the connection holds no link at another "
            "provider (a token is only valid at the provider that issued it)"
        )
    else:
        tried = ", ".join(a.provider for a in attempts)
        reason = f"{last.message}; every linked provider failed ({tried})"
        if skipped:
            reason += "; skipped: " + "; ".join(skipped)
    return msgspec.structs.replace(last, message=reason)

"""The bookkeeping of one command's walk down its candidate providers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from events.connection import ProviderRanking
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
# A command without a deadline still gives each try a budget; running out of it
# before every linked provider was called ends this try, not the sync: the next
# try (a deferral, retried up to the sync's maximum age) resumes.
TRY_TIME_SPENT = ErrorInfo(
    code="try_time_spent",
    message="this try's time ran out before every linked provider could answer; "
    "the sync is tried again",
    type="network",
    retryable=True,
    blame="syncyard",
)


class CallRun:
    """One command's walk down its candidate providers: what was tried and skipped."""

    def __init__(
        self,
        candidates: list[LinkCredentials],
        ranking: ProviderRanking | None,
        clock: Callable[[], float],
    ) -> None:
        self.candidates = candidates
        self.ranking = ranking
        self.clock = clock
        self.started = clock()
        self.attempts: list[Attempt] = []
        self.skipped: list[str] = []
        self.refused: list[str] = []  # providers syncyard itself would not call (no call made)
        self.waits: list[float] = []  # when skipped or failed providers said to come back
        self.last_error: ErrorInfo | None = None
        # The bank the command is about: its breaker at each provider is asked too.
        self.institution_id: str | None = None
        # A person waits on this command (a link being made): not held on the ramp.
        self.person_waiting = False

    def finish(self, **fields: Any) -> Outcome:
        used = fields.get("provider")
        return Outcome(
            retry_after_s=min(self.waits) if self.waits else None,
            attempts=tuple(self.attempts),
            response_time_ms=(self.clock() - self.started) * 1000.0,
            failover_used=used is not None and used != self.candidates[0].provider,
            skipped=tuple(self.skipped),
            refused=tuple(self.refused),
            ranking=self.ranking,
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


# How many points (of 0-100) a provider must trail the best remaining one by
# before it loses its place in the directory's order. Scores move in steps of a
# few points with each call in a short window; 15 points is, for instance, a
# success rate of 85 % against 100 %, or no recent success against a fast one.
HEALTH_MARGIN = 15


def rank_by_health(
    links: Sequence[LinkCredentials], scores: Mapping[str, int], margin: int = HEALTH_MARGIN
) -> tuple[list[LinkCredentials], ProviderRanking]:
    """The directory's order (`links`, as `order_links` gave it) adjusted by live health.

    The rule: the next provider is the first one, in the directory's order,
    whose score is within `margin` of the best score among those left. Scores
    within the margin keep the directory's order, so noise never flips it, and
    the result depends on the scores alone, not on the order they were
    compared in. A provider without a score counts as fully healthy.
    """
    left = list(links)
    ordered: list[LinkCredentials] = []
    while left:
        best = max(scores.get(link.provider, 100) for link in left)
        chosen = next(link for link in left if scores.get(link.provider, 100) >= best - margin)
        ordered.append(chosen)
        left.remove(chosen)
    ranking = ProviderRanking(
        directory=tuple(link.provider for link in links),
        order=tuple(link.provider for link in ordered),
        scores={link.provider: scores.get(link.provider, 100) for link in links},
        margin=margin,
    )
    return ordered, ranking


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

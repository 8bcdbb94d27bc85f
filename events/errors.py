"""The error taxonomy every provider error is classified into."""

from __future__ import annotations

from typing import Literal

from events.base import Message

ErrorType = Literal[
    "auth",
    "rate_limit",
    "network",
    "provider_down",
    "maintenance",
    "validation",
    "unknown",
]
ERROR_TYPES: tuple[ErrorType, ...] = (
    "auth",
    "rate_limit",
    "network",
    "provider_down",
    "maintenance",
    "validation",
    "unknown",
)


# Whose failure an error is, which decides whose health it counts against:
# - provider: the provider itself (its 5xx, its outage, its rate limit on us, a
#   garbled answer, our client credentials there): its provider-wide breaker;
# - institution: the bank behind the provider (down, not responding): the
#   breaker of that provider at that bank, and the bank's health everywhere;
# - person: the person's login or consent at that provider (re-authenticate);
# - caller: the command itself was wrong (a bad cursor, an unknown account);
# - syncyard: our own fault (a bug, a missing setting).
# Only provider and institution failures count against health: a caller's
# mistake must never show a provider as down.
Blame = Literal["provider", "institution", "person", "caller", "syncyard"]
BLAMES: tuple[Blame, ...] = ("provider", "institution", "person", "caller", "syncyard")

# Where a rule or an event says nothing (events recorded before `blame` existed).
_BLAME_BY_TYPE: dict[ErrorType, Blame] = {
    "auth": "person",
    "rate_limit": "provider",
    "network": "provider",
    "provider_down": "provider",
    "maintenance": "institution",
    "validation": "caller",
    "unknown": "provider",
}


def default_blame(error_type: ErrorType) -> Blame:
    """Whose failure an error of this type is, when nothing more is known."""
    return _BLAME_BY_TYPE[error_type]


class ErrorInfo(Message, frozen=True, kw_only=True):
    """What went wrong, in terms a caller can act on.

    `retryable` says whether trying again (here or at a backup link) can help;
    `provider` is the provider whose answer this is, or None for our own errors;
    `blame` whose failure it is (None in events recorded before it existed:
    read it through `blame_of`).
    """

    code: str
    message: str
    type: ErrorType
    retryable: bool
    provider: str | None = None
    blame: Blame | None = None


def blame_of(error: ErrorInfo) -> Blame:
    return error.blame if error.blame is not None else default_blame(error.type)


def counts_against_health(error: ErrorInfo) -> bool:
    """Whether this failure says anything about the provider's or the bank's health."""
    return blame_of(error) in ("provider", "institution")

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


class ErrorInfo(Message, frozen=True, kw_only=True):
    """What went wrong, in terms a caller can act on.

    `retryable` says whether trying again (here or at a backup link) can help;
    `provider` is the provider whose answer this is, or None for our own errors.
    """

    code: str
    message: str
    type: ErrorType
    retryable: bool
    provider: str | None = None

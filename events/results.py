"""The result envelope every command answers with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events.base import Message
from events.errors import ErrorInfo


class CommandResult(Message, frozen=True, kw_only=True):
    """One answer per command, whether it succeeded, failed over or failed.

    `duplicate` is true when the command id had already been applied: the
    answer then reports the first outcome and nothing was done again.
    `deferred_until` set means: not done yet, syncyard itself will try again
    then and send another result; nothing is needed from the caller.
    """

    command_id: str
    op: str
    success: bool
    data: dict[str, Any] | None = None
    provider: str | None = None
    failover_used: bool = False
    error: ErrorInfo | None = None
    response_time_ms: float = 0.0
    attempts: int = 0
    duplicate: bool = False
    deferred_until: datetime | None = None

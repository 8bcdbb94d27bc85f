"""What lands on `syncyard.dlq.<op>`: a command syncyard could not accept or finish."""

from __future__ import annotations

from datetime import datetime

from events.base import Message


class DeadLetter(Message, frozen=True, kw_only=True):
    """A refused or abandoned command, with why, kept for a person to look at.

    `payload` is the command as received (cut to the size limit), as text;
    `deliveries` is how many times the worker tried before giving up.
    """

    reason_code: str
    reason: str
    original_subject: str
    command_id: str | None
    received_at: datetime
    deliveries: int
    payload: str

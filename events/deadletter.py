"""What lands on `syncyard.dlq.<op>`: a command syncyard could not accept or finish."""

from __future__ import annotations

from datetime import datetime

from events.base import Message


class DeadLetter(Message, frozen=True, kw_only=True):
    """A refused or abandoned command, with why, kept for a person to look at.

    `payload` is what may be kept of the command, as JSON text: its known,
    non-secret fields (`events.commands.dead_letter_payload`), or, when it is
    not a JSON object, only its length and SHA-256. Dead letters are kept for
    a limited time (the DLQ stream's `max_age`). `deliveries` is how many times
    the worker tried before giving up.
    """

    reason_code: str
    reason: str
    original_subject: str
    command_id: str | None
    received_at: datetime
    deliveries: int
    payload: str

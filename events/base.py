"""Envelope bases shared by every command, event and result on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

# Command ids double as `Nats-Msg-Id`, so they stay short and header-safe.
CommandId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ProviderName = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]
Region = Annotated[str, msgspec.Meta(min_length=2, max_length=16, pattern=r"^[A-Za-z_-]+$")]


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of everything that crosses a process boundary."""


class DomainEvent(Message, frozen=True, kw_only=True):
    """An event recorded in the event store.

    `originator_id` is the stream (aggregate) id and `originator_version` its
    position in that stream; `metadata` carries the W3C trace context and the
    id of the command that caused the event.
    """

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    metadata: dict[str, str] = {}

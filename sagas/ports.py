"""What the sagas need from where they live; `infra/saga_store.py` is the PostgreSQL store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from events.base import DomainEvent
from sagas.state import SagaState


class SagaConflictError(Exception):
    """Another holder moved the saga on: this one must stop and let go."""


class SagaStore(Protocol):
    """A saga's event stream, and the schedule that says when to look at it next."""

    # For flows whose command names none; recorded in the saga when it starts.
    link_deadline_s: float

    async def load(self, saga_id: UUID) -> SagaState | None:
        """The saga folded from its events, or None if it never started."""

    async def append(self, events: Sequence[DomainEvent]) -> None:
        """Append atomically; SagaConflictError if a stream moved meanwhile."""

    async def public_token(self, saga_id: UUID) -> str | None:
        """The public token the person's completion brought, once it arrived."""

    async def schedule(self, saga_id: UUID, due_at: datetime) -> None:
        """Look at the saga at `due_at` (or earlier, if it is already due earlier)."""

    async def wake(self, saga_id: UUID) -> None:
        """Look at the saga now: something it waits for arrived."""

    async def renew(self, saga_id: UUID, owner: str) -> bool:
        """Extend `owner`'s lease on the saga; False if it lost it."""

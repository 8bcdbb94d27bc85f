"""Events of the saga aggregate (`LinkSaga`): one stream per link or reconnect flow.

They are published on `syncyard.evt.saga.*`, so none carries a secret: a
public token or access token lives only in the private credential streams
(`events/credentials.py`); here a step's output names the provider, the item
and the credential by id. `LinkCompleted` and `LinkAborted` are the result
events upstream waits for (`kind` says which flow).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from events.base import DomainEvent
from events.errors import ErrorInfo

SagaKind = Literal["link", "reconnect"]
CompletionSource = Literal["command", "webhook"]


class SagaStarted(DomainEvent, frozen=True, kw_only=True):
    """A flow began for one account; `params` are the start command's non-secret fields."""

    kind: SagaKind
    command_id: str
    space_id: str
    account_id: str
    connection_id: UUID
    params: dict[str, Any] = {}


class SagaStepStarted(DomainEvent, frozen=True, kw_only=True):
    """A step is about to act; `idempotency_key` goes with every side effect it makes.

    Recorded before the side effect: a step found started but not finished
    after a crash runs again with the same key, so the provider does it once.
    """

    step: str
    attempt: int
    idempotency_key: str


class SagaStepSucceeded(DomainEvent, frozen=True, kw_only=True):
    step: str
    attempt: int
    output: dict[str, Any] = {}


class SagaStepFailed(DomainEvent, frozen=True, kw_only=True):
    """A step's attempt failed; `retry_at` set when another attempt will be made.

    `refused`: syncyard called no provider (a breaker open or probing, a rate
    limit, a full bulkhead): the step waits until `retry_at`, when the refusal
    lifts, and the attempt does not count against the step's tries.
    """

    step: str
    attempt: int
    error: ErrorInfo
    retryable: bool
    retry_at: datetime | None = None
    refused: bool = False


class SagaTimerSet(DomainEvent, frozen=True, kw_only=True):
    """A durable deadline: it fires at `due_at` even across restarts."""

    timer: str
    due_at: datetime


class SagaTimerFired(DomainEvent, frozen=True, kw_only=True):
    timer: str


class LinkCompletionReceived(DomainEvent, frozen=True, kw_only=True):
    """The person finished the provider's link UI (a `link.complete` command or a webhook).

    `with_public_token` says whether a public token was kept (privately) with it.
    """

    source: CompletionSource
    with_public_token: bool


class SagaCompensating(DomainEvent, frozen=True, kw_only=True):
    """The flow cannot finish: `step` failed for `reason`; completed steps are undone next."""

    reason: str
    step: str
    error: ErrorInfo | None = None


class SagaCompensationStarted(DomainEvent, frozen=True, kw_only=True):
    compensation: str
    for_step: str
    attempt: int
    idempotency_key: str


class SagaCompensationSucceeded(DomainEvent, frozen=True, kw_only=True):
    compensation: str
    attempt: int


class SagaCompensationFailed(DomainEvent, frozen=True, kw_only=True):
    compensation: str
    attempt: int
    error: ErrorInfo
    retry_at: datetime | None = None


class LinkCompleted(DomainEvent, frozen=True, kw_only=True):
    """The flow finished: the link works and its first sync ran."""

    kind: SagaKind
    command_id: str
    space_id: str
    account_id: str
    provider: str
    item_id: str
    failover_used: bool = False
    accounts: int = 0


class LinkAborted(DomainEvent, frozen=True, kw_only=True):
    """The flow gave up at `step` for `reason`, after undoing what it had done."""

    kind: SagaKind
    command_id: str
    space_id: str
    account_id: str
    reason: str
    step: str
    error: ErrorInfo | None = None


class SagaNeedsAttention(DomainEvent, frozen=True, kw_only=True):
    """A compensation kept failing: a person must finish the clean-up (`reason` says what)."""

    reason: str
    compensation: str


class SagaResumed(DomainEvent, frozen=True, kw_only=True):
    """An operator fixed what `SagaNeedsAttention` named and sent `saga.resume`.

    The compensation that kept failing gets its full retry budget again, and
    the clean-up goes on from where it stopped. `note` is the operator's own.
    """

    compensation: str
    command_id: str
    note: str


SAGA_EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    SagaStarted,
    SagaStepStarted,
    SagaStepSucceeded,
    SagaStepFailed,
    SagaTimerSet,
    SagaTimerFired,
    LinkCompletionReceived,
    SagaCompensating,
    SagaCompensationStarted,
    SagaCompensationSucceeded,
    SagaCompensationFailed,
    LinkCompleted,
    LinkAborted,
    SagaNeedsAttention,
    SagaResumed,
)

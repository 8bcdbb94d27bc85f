"""What a step or compensation gets to work with, and what it hands back.

An executor does the I/O of one step (or compensation) and returns a
`StepResult`: an output (or an error), plus what must be recorded with it in
the same transaction: a decision on the connection (its new link, the
attempts it made) and private events (a credential). The runner commits them
together with the saga's own event, so a crash leaves either all of it or
none of it, and a step found unfinished runs again under the same key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from events.base import DomainEvent
from events.errors import ErrorInfo
from sagas.ports import SagaStore
from sagas.state import SagaState
from services.connections.domain import ConnectionState
from services.dependencies import Dependencies
from services.providers.base import LinkCredentials, ProviderAdapter, ProviderCallError

ConnectionDecision = Callable[[ConnectionState | None], list[DomainEvent]]


class StepContext(msgspec.Struct, frozen=True, kw_only=True):
    deps: Dependencies
    store: SagaStore
    state: SagaState
    attempt: int
    key: str
    now: datetime
    webhook_url: str | None = None

    @property
    def command_prefix(self) -> str:
        """Ids of the commands a saga makes on the connection (a command id's alphabet)."""
        return f"saga:{self.state.id}"

    def adapter(self, provider: str) -> ProviderAdapter:
        adapter = self.deps.orchestrator.providers.get(provider)
        if adapter is None:
            raise StepFailedError(
                ErrorInfo(
                    code="unknown_provider",
                    message=f"no adapter configured for provider {provider!r}",
                    type="validation",
                    retryable=False,
                    provider=provider,
                )
            )
        return adapter

    async def link(self, provider: str) -> LinkCredentials | None:
        """The connection's link at `provider`, with its token (None once it is forgotten)."""
        connection = await self.deps.store.get_connection(self.state.connection_id)
        if connection is None:
            return None
        for link in await self.deps.store.credentials(connection):
            if link.provider == provider:
                return link
        return None


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    output: dict[str, Any] = {}
    error: ErrorInfo | None = None
    connection: ConnectionDecision | None = None
    private: Sequence[DomainEvent] = ()
    # Refused without a call: try again then, without spending one of the step's tries.
    wait_until: datetime | None = None


class StepFailedError(Exception):
    """A step or compensation that could not be done; the message is safe to log."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{error.type}/{error.code}: {error.message}")
        self.error = error

    @classmethod
    def from_message(cls, code: str, message: str) -> StepFailedError:
        """A failure of ours (nothing a retry can fix)."""
        return cls(ErrorInfo(code=code, message=message, type="validation", retryable=False))

    @classmethod
    def from_provider(cls, exc: ProviderCallError) -> StepFailedError:
        return cls(exc.error)


Executor = Callable[[StepContext], Awaitable[StepResult]]

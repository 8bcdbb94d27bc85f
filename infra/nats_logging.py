"""What a NATS connection says in the log when the server goes away or will not answer.

nats-py's default logs every failed (re)connect attempt with a full traceback,
every two seconds for as long as the server is gone: a 3 a.m. log of pages of
identical stack traces, with the one line that matters ("connection refused")
buried in them. Here each distinct error is one line, repeats of it are counted
and said again at most every `REPEAT_EVERY_S`, and the connection's losses and
returns are said once each. A permissions or authorization violation is an
error, not a warning: syncyard's own code or a login went where it may not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol


class _Connection(Protocol):
    """What of a `nats.aio.client.Client` tells its own close from a loss."""

    @property
    def is_closed(self) -> bool: ...

    @property
    def is_draining(self) -> bool: ...


log = logging.getLogger(__name__)
REPEAT_EVERY_S = 60.0
# How nats-server words a refusal by its permissions (`-ERR 'Permissions Violation …'`).
_REFUSALS = ("permissions violation", "authorization violation")


class ConnectionLog:
    """`nats.connect` callbacks for the connection called `name` (`callbacks()`)."""

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._last_error: str | None = None
        self._said_at = 0.0
        self._unsaid = 0
        self._client: _Connection | None = None

    def watch(self, client: _Connection) -> None:
        """The connection these callbacks are for: its own close is not a loss."""
        self._client = client

    def callbacks(self) -> dict[str, Any]:
        return {
            "error_cb": self.on_error,
            "disconnected_cb": self.on_disconnected,
            "reconnected_cb": self.on_reconnected,
        }

    async def on_error(self, error: Exception) -> None:
        said = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        level = logging.ERROR if any(r in said.lower() for r in _REFUSALS) else logging.WARNING
        now = self._clock()
        if said != self._last_error:
            self._last_error, self._said_at, self._unsaid = said, now, 0
            log.log(level, "NATS (%s): %s", self.name, said)
            return
        self._unsaid += 1
        if now - self._said_at >= REPEAT_EVERY_S:
            log.log(
                level,
                "NATS (%s): %s (%d more times since it was last said)",
                self.name,
                said,
                self._unsaid,
            )
            self._said_at, self._unsaid = now, 0

    async def on_disconnected(self) -> None:
        client = self._client
        if client is not None and (client.is_closed or client.is_draining):
            # nats-py says "disconnected" on a close we asked for too (a stop).
            log.info("NATS (%s): connection closed", self.name)
            return
        log.warning("NATS (%s): connection lost; reconnecting", self.name)

    async def on_reconnected(self) -> None:
        if self._unsaid:
            log.warning(
                "NATS (%s): %s (%d more times before the connection came back)",
                self.name,
                self._last_error,
                self._unsaid,
            )
        self._last_error, self._unsaid = None, 0
        log.warning("NATS (%s): reconnected", self.name)

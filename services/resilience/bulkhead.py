"""Bulkheads: at most N calls in flight per provider, so a slow one cannot starve the rest."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class BulkheadFullError(Exception):
    """No slot freed up within the wait; the caller should try another provider."""


class Bulkhead:
    def __init__(self, name: str, max_concurrent: int, max_wait_s: float) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_wait_s = max_wait_s
        self._slots = asyncio.Semaphore(max_concurrent)
        self.in_flight = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            if self._slots.locked():
                await asyncio.wait_for(self._slots.acquire(), self.max_wait_s)
            else:
                # The usual case, without wait_for's task per call.
                await self._slots.acquire()
        except TimeoutError:
            raise BulkheadFullError(
                f"{self.name}: {self.max_concurrent} calls already in flight "
                f"for over {self.max_wait_s:g}s"
            ) from None
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()

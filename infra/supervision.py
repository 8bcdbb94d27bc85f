"""Keep a long-running loop alive through outages of the servers it depends on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from infra.waiting import wait_for_stop

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


async def supervise(
    name: str,
    run: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    *,
    on_restart: Callable[[str, BaseException], None] | None = None,
) -> None:
    """Run `run(stop)` until `stop`; when it fails, log why and start it again.

    A database restart or a NATS reconnect must not take the whole process
    down: the loops are restartable by design (positions live in PostgreSQL,
    unacked commands in JetStream), so restarting them is always safe.
    """
    backoff = FIRST_BACKOFF_S
    while not stop.is_set():
        try:
            await run(stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s stopped on an error; restarting in %.1fs: %r", name, backoff, exc)
            if on_restart is not None:
                on_restart(name, exc)
            await wait_for_stop(stop, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

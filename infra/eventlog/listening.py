"""A LISTEN that lasts a loop's lifetime, on a pooled connection that always goes back.

Followers hold one connection for LISTEN while they run. When UNLISTEN fails (the
server ended the session, the shutdown was cancelled, the socket hangs), the
connection must still go back: `Pool.close()` waits forever for one that does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

# UNLISTEN on a healthy session is one round trip; on a half-open socket it could
# wait for TCP to give up, far longer than a shutdown should.
UNLISTEN_TIMEOUT_S = 5.0

NotifyCallback = Callable[..., None]


@contextlib.asynccontextmanager
async def listening(
    pool: asyncpg.Pool, channel: str, on_notify: NotifyCallback
) -> AsyncIterator[PoolConnectionProxy]:
    """Hold one of `pool`'s connections LISTENing on `channel` for the block's duration."""
    conn: PoolConnectionProxy = await pool.acquire()
    try:
        await conn.add_listener(channel, on_notify)
        yield conn
    finally:
        try:
            await asyncio.wait_for(conn.remove_listener(channel, on_notify), UNLISTEN_TIMEOUT_S)
        except asyncio.CancelledError:
            _drop(conn)
            raise
        except Exception as error:
            # Its session ended (the pool already took it back) or cannot UNLISTEN:
            # closed, it is replaced by a fresh session on the pool's next acquire.
            log.info("LISTEN %s: dropping its connection (%r)", channel, error)
            _drop(conn)
        finally:
            await pool.release(conn)  # a no-op for one the pool already took back


def _drop(conn: PoolConnectionProxy) -> None:
    with contextlib.suppress(asyncpg.InterfaceError):  # already released
        conn.terminate()

"""Rate limits per provider and operation, shared by every replica through PostgreSQL.

One row per limit, updated by a single conditional UPDATE: the row lock makes
the check-and-count atomic across replicas, so no call is sent that would go
over the limit (it goes to a backup provider or is deferred instead). A
provider's own `Retry-After` blocks the key until then.

A permit is one provider call, as a provider's own limit counts them: the
orchestrator takes one before each page of a sync's walk and each retry in the
call, not one per sync (services/orchestrator.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import asyncpg
import msgspec

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_rate_limits (
    key text PRIMARY KEY,
    minute_start timestamptz NOT NULL DEFAULT date_trunc('minute', now()),
    minute_calls int NOT NULL DEFAULT 0,
    hour_start timestamptz NOT NULL DEFAULT date_trunc('hour', now()),
    hour_calls int NOT NULL DEFAULT 0,
    blocked_until timestamptz
);
"""

_TAKE = """
UPDATE syncyard_rate_limits SET
    minute_calls = CASE WHEN minute_start = date_trunc('minute', now())
                        THEN minute_calls + 1 ELSE 1 END,
    minute_start = date_trunc('minute', now()),
    hour_calls = CASE WHEN hour_start = date_trunc('hour', now()) THEN hour_calls + 1 ELSE 1 END,
    hour_start = date_trunc('hour', now())
WHERE key = $1
  AND (blocked_until IS NULL OR blocked_until <= now())
  AND (minute_start <> date_trunc('minute', now()) OR minute_calls < $2)
  AND (hour_start <> date_trunc('hour', now()) OR hour_calls < $3)
RETURNING minute_calls
"""

_WAIT = """
SELECT GREATEST(
    COALESCE(EXTRACT(EPOCH FROM blocked_until - now()), 0),
    CASE WHEN minute_start = date_trunc('minute', now()) AND minute_calls >= $2
         THEN EXTRACT(EPOCH FROM minute_start + interval '1 minute' - now()) ELSE 0 END,
    CASE WHEN hour_start = date_trunc('hour', now()) AND hour_calls >= $3
         THEN EXTRACT(EPOCH FROM hour_start + interval '1 hour' - now()) ELSE 0 END
) FROM syncyard_rate_limits WHERE key = $1
"""

_BLOCK = """
INSERT INTO syncyard_rate_limits (key, blocked_until) VALUES ($1, now() + make_interval(secs => $2))
ON CONFLICT (key) DO UPDATE SET blocked_until =
    GREATEST(COALESCE(syncyard_rate_limits.blocked_until, now()), EXCLUDED.blocked_until)
"""

UNLIMITED = 2_000_000_000


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    per_minute: int | None = None
    per_hour: int | None = None


class RateDecision(msgspec.Struct, frozen=True, kw_only=True):
    allowed: bool
    retry_after_s: float | None = None
    reason: str = ""


class RateLimiter:
    """Limits keyed "provider" or "provider/op"; the more specific one applies.

    Providers without a configured limit cost nothing per call.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        limits: Mapping[str, RateLimit],
    ) -> None:
        self.pool = pool
        self.limits = dict(limits)
        self._ready = False

    def _key(self, provider: str, op: str) -> tuple[str, RateLimit] | None:
        for key in (f"{provider}/{op}", provider):
            if key in self.limits:
                return key, self.limits[key]
        return None

    async def setup(self) -> None:
        await self._ensure_rows()

    async def _ensure_rows(self) -> None:
        if self._ready:
            return
        async with self.pool.acquire() as conn:
            # Two replicas starting together may race to create the table.
            with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                await conn.execute(SCHEMA)
            # Never an empty list: asyncpg then parses the statement but sends no
            # Sync, and the server's statement timeout keeps running on the idle
            # connection (the per-command pool skips the reset that would end it):
            # the next query on it, once that timeout has passed, fails at once.
            if self.limits:
                await conn.executemany(
                    "INSERT INTO syncyard_rate_limits (key) VALUES ($1) ON CONFLICT DO NOTHING",
                    [(key,) for key in self.limits],
                )
        self._ready = True

    async def acquire(self, provider: str, op: str) -> RateDecision:
        """Count one call if it fits every window; otherwise say how long to wait."""
        found = self._key(provider, op)
        if found is None:
            return RateDecision(allowed=True)
        await self._ensure_rows()
        key, limit = found
        per_minute = limit.per_minute or UNLIMITED
        per_hour = limit.per_hour or UNLIMITED
        async with self.pool.acquire() as conn:
            if await conn.fetchval(_TAKE, key, per_minute, per_hour) is not None:
                return RateDecision(allowed=True)
            wait = await conn.fetchval(_WAIT, key, per_minute, per_hour)
        wait_s = float(wait or 0.0)
        return RateDecision(
            allowed=False,
            retry_after_s=wait_s,
            reason=f"{key}: rate limit reached; the next call fits in {wait_s:.0f}s",
        )

    async def block(self, provider: str, op: str, seconds: float) -> None:
        """The provider said Retry-After for a quota we manage: nobody calls before then.

        Without a configured limit the 429 may concern one item only (Plaid's
        per-item limits), so it defers that command alone, not every connection.
        """
        found = self._key(provider, op)
        if found is None:
            return
        await self._ensure_rows()
        await self.pool.execute(_BLOCK, found[0], float(seconds))

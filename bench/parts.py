"""The resilience pieces the benchmarks of issue #4 build, as infra/bootstrap.py builds them.

Three providers linked in the sandbox, one HTTP session, an event store on a
fresh PostgreSQL database, a breaker board, rate limiters and bulkheads, and
orchestrators made of any subset of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg
import msgspec

from bench.servers import CIPHER_KEY, fresh_database, provider_settings, sandbox, servers
from events.commands import SyncTransactions
from events.connection import ConnectionAttempted
from infra.bootstrap import pg_parts
from infra.config import DEFAULT_HIERARCHY
from infra.eventstore import PostgresBreakerRecorder, SyncyardApplication, library_env
from services.orchestrator import Orchestrator
from services.providers.base import LinkCredentials, ProviderAdapter
from services.providers.registry import build_providers
from services.resilience.board import BreakerBoard
from services.resilience.bulkhead import Bulkhead
from services.resilience.policy import PolicyBook
from services.resilience.rate_limit import RateLimit, RateLimiter

PROVIDERS = ("plaid", "mx", "finicity")
REGION = "US"
OP = SyncTransactions.op


class Parts(msgspec.Struct, kw_only=True):
    """One HTTP session, PostgreSQL, and the resilience pieces, shared by a benchmark's calls."""

    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    app: SyncyardApplication
    providers: dict[str, ProviderAdapter]
    board: BreakerBoard
    free: RateLimiter  # no limit configured: Retry-After blocks re-read once a second
    limited: RateLimiter  # a (never reached) limit on plaid: one UPDATE per call
    bulkheads: dict[str, Bulkhead]

    def orchestrator(
        self,
        *,
        providers: dict[str, ProviderAdapter] | None = None,
        gate: BreakerBoard | None = None,
        limiter: RateLimiter | None = None,
        bulkheads: bool = False,
    ) -> Orchestrator:
        return Orchestrator(
            providers if providers is not None else self.providers,
            hierarchy=DEFAULT_HIERARCHY,
            gate=gate,
            limiter=limiter,
            bulkheads=self.bulkheads if bulkheads else None,
        )

    def deployed(self, providers: dict[str, ProviderAdapter] | None = None) -> Orchestrator:
        """As infra/bootstrap.py builds it: gate, limiter and bulkheads (no limit configured)."""
        return self.orchestrator(
            providers=providers, gate=self.board, limiter=self.free, bulkheads=True
        )


def new_board(app: SyncyardApplication) -> BreakerBoard:
    """A board recording to `app`'s store, with the default policy and a real clock."""
    return BreakerBoard(PostgresBreakerRecorder(app), PolicyBook(), lambda: datetime.now(UTC))


@contextlib.asynccontextmanager
async def parts(sandbox_url: str, db_url: str) -> AsyncIterator[Parts]:
    env = library_env(pg_parts(db_url), CIPHER_KEY)
    app = await asyncio.to_thread(SyncyardApplication, env)
    async with (
        aiohttp.ClientSession() as session,
        asyncpg.create_pool(db_url, min_size=2, max_size=4) as pool,
    ):
        free = RateLimiter(pool, {})
        limited = RateLimiter(pool, {"plaid": RateLimit(per_minute=1_000_000_000)})
        await free.setup()
        await limited.setup()
        try:
            yield Parts(
                session=session,
                pool=pool,
                app=app,
                providers=build_providers(session, provider_settings(sandbox_url, PROVIDERS)),
                board=new_board(app),
                free=free,
                limited=limited,
                bulkheads={p: Bulkhead(p, 128, 10.0) for p in PROVIDERS},
            )
        finally:
            await asyncio.to_thread(app.close)


@contextlib.asynccontextmanager
async def alone() -> AsyncIterator[tuple[Parts, str, str, str]]:
    """For a benchmark run by itself: the pieces on a fresh database, then the NATS,
    PostgreSQL and sandbox URLs they run against."""
    async with (
        servers() as (nats_url, pg_url),
        sandbox() as sandbox_url,
        parts(sandbox_url, await fresh_database(pg_url)) as p,
    ):
        yield p, nats_url, pg_url, sandbox_url


def sync_cmd(command_id: str, account: str = "o") -> SyncTransactions:
    return SyncTransactions(command_id=command_id, space_id="bench", account_id=account, count=5)


def through(
    orch: Orchestrator, links: list[LinkCredentials], command_id: str
) -> Callable[[], Awaitable[object]]:
    """One successful sync through `orch`, as a call `interleaved` can time."""
    cmd = sync_cmd(command_id)

    async def call() -> None:
        outcome = await orch.execute_with_failover(cmd, links, REGION)
        assert outcome.success, outcome.error

    return call


def attempt_event(provider: str, command_id: str, *, ok: bool) -> ConnectionAttempted:
    """A finished call as the breaker follower reads it from the log."""
    return ConnectionAttempted(
        originator_id=uuid.UUID(int=1),
        originator_version=1,
        timestamp=datetime.now(UTC),
        command_id=command_id,
        op=OP,
        provider=provider,
        region=REGION,
        attempt=1,
        failover=False,
        outcome="success" if ok else "failure",
        response_time_ms=1.0,
        error_code=None if ok else "INSTITUTION_DOWN",
        error_type=None if ok else "provider_down",
    )


async def open_every_breaker(board: BreakerBoard) -> None:
    """Five counted failures each (the default threshold), fed as the follower would."""
    for provider in PROVIDERS:
        for i in range(5):
            await board.observe(attempt_event(provider, f"fail-{provider}-{i}", ok=False))
        assert board.status(provider, REGION) == "open", board.snapshot()

"""The composition root: every adapter built here, from Settings, and nowhere else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import aiohttp
import asyncpg
import nats
from aiohttp import web
from eventsourcing.cryptography import AESCipher
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from events.commands import Command
from events.results import CommandResult
from infra.config import TLS_PARAMETERS, Settings, mask_url
from infra.credential_keys import CredentialKeys, store_key
from infra.deferral_timer import ScheduledDeferrals
from infra.eventlog.breaker_follower import BreakerFollower
from infra.eventlog.institution_follower import InstitutionFollower
from infra.eventlog.projector import Projector
from infra.eventlog.reader import NotificationLogReader
from infra.eventlog.relay import EventRelay, event_id_key
from infra.eventstore import (
    EVENTS_TABLE,
    PostgresBreakerRecorder,
    PostgresEventStore,
    library_env,
    open_application,
)
from infra.feed_index import PostgresFeedIndex
from infra.feed_reader import ProjectedFeedReader
from infra.http.api import create_app
from infra.http.auth import ApiToken, local_admin
from infra.http.breakers import BREAKER_OPERATIONS, breaker_routes
from infra.http.manual import MANUAL_OPERATIONS, manual_routes
from infra.http.openapi import OPENAPI_OPERATIONS
from infra.http.sagas import SAGA_OPERATIONS, saga_routes
from infra.http.webhooks import WEBHOOK_OPERATIONS, webhook_routes
from infra.institution_store import open_institutions
from infra.linked_items import ProjectedLinkedItems
from infra.manual_entries import PostgresManualEntries
from infra.nats_credentials import connect_options
from infra.nats_logging import ConnectionLog
from infra.nats_roles import RELAY, WORKER
from infra.provider_status import ProviderStatusPoller
from infra.saga_store import PostgresSagaStore
from infra.saga_timers import advance_sagas_with
from infra.scheduler import Scheduler
from infra.streams import WORKER_ACK_WAIT_S, WORKER_CONSUMER, WORKER_MAX_DELIVER, declare_streams
from infra.supervision import supervise
from infra.waiting import unless_stopped
from infra.webhook_log import WebhookLog
from infra.worker import CommandWorker
from projections.registry import all_projections
from sagas.commands import saga_handlers
from sagas.runner import CrashHook, SagaRunner
from services.connections.link_health import RelinkPolicy
from services.dependencies import Handler
from services.handlers import HANDLERS, Dependencies
from services.orchestrator import Orchestrator
from services.providers.plaid.adapter import PlaidAdapter
from services.providers.registry import build_providers
from services.resilience.board import BreakerBoard
from services.resilience.bulkhead import Bulkhead
from services.resilience.live_health import LiveHealth
from services.resilience.rate_limit import RateLimiter

log = logging.getLogger(__name__)

ALL_COMPONENTS = frozenset({"worker", "relay", "projector", "api", "provider_status"})
# Every command op's handler: the services' own and the saga flows'.


class ConfigurationError(RuntimeError):
    """Settings that syncyard refuses to start with."""


SYNC_CRASH_ENV = "SYNCYARD_SYNC_CRASH_AT"
SYNC_CRASH_POINTS = ("after_provider", "after_commit")


def _no_crash(_point: str) -> None:
    """The sync path's checkpoints, unarmed."""


def sync_crash_hook(env: Mapping[str, str] | None = None) -> Callable[[str], None]:
    """Fault injection for crash tests, as `SYNCYARD_SAGA_CRASH_AT` is for sagas.

    `SYNCYARD_SYNC_CRASH_AT=after_provider` SIGKILLs this process when a sync has
    the provider's pages and nothing is recorded yet; `after_commit` when its
    events are committed (with their feed index rows) but not yet relayed or
    answered. Unset: inert.
    """
    point = (os.environ if env is None else env).get(SYNC_CRASH_ENV)
    if not point:
        return _no_crash
    if point not in SYNC_CRASH_POINTS:
        raise ConfigurationError(
            f"{SYNC_CRASH_ENV}={point!r}: write one of {', '.join(SYNC_CRASH_POINTS)}"
        )

    def crash(at: str) -> None:
        if at == point:
            log.warning("fault injection: SIGKILL at sync %s", at)
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


async def _keep_session(_: asyncpg.Connection) -> None:
    """A no-op reset for pools whose users never change session state."""


# Statement timeouts (server side, so a query stuck on a lock or a bad plan is
# cancelled by PostgreSQL itself). The API answers people and dashboards: a query
# that takes longer has gone wrong. Per-command queries are short too, but may
# wait on a rate-limit row lock under load. The followers' pool has none: the
# projector may apply a large page while catching up, as replays and migrations do.
QUERY_STATEMENT_TIMEOUT_S = 30.0


def _statement_timeout(seconds: float) -> dict[str, str]:
    return {"statement_timeout": f"{round(seconds * 1000)}ms"}


# By the time pools close every component has stopped, so a connection still out
# is a leak; waiting for it (asyncpg's default) would hang the shutdown forever.
POOL_CLOSE_TIMEOUT_S = 10.0


async def close_pool(pool: asyncpg.Pool, name: str) -> None:
    out_at_start = pool.get_size() - pool.get_idle_size()
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        # asyncpg's close terminates every connection when it is cancelled.
        log.error(
            "pool %s: not closed within %gs (%d connections were out when closing began); "
            "terminated",
            name,
            POOL_CLOSE_TIMEOUT_S,
            out_at_start,
        )


# libpq parameters of DATABASE_URL's query that the event store's connections
# keep besides TLS: they change how, not where, syncyard connects.
_KEPT_PARAMETERS = TLS_PARAMETERS | {"application_name", "connect_timeout", "target_session_attrs"}


def pg_parts(database_url: str) -> dict[str, str]:
    """libpq URL → the separate keys the eventsourcing library reads.

    `params` keeps the URL's TLS settings (`sslmode`, `sslrootcert`, ...) as a
    query string: the library builds its connections from separate keys, and
    without them a `?sslmode=verify-full` would silently connect without TLS.
    """
    url = urlsplit(database_url)
    query = parse_qsl(url.query, keep_blank_values=True)
    dropped = sorted({name for name, _ in query if name not in _KEPT_PARAMETERS})
    if dropped:
        log.warning("DATABASE_URL: parameters not passed to the event store: %s", dropped)
    return {
        "host": url.hostname or "127.0.0.1",
        "port": str(url.port or 5432),
        "user": unquote(url.username or "postgres"),
        "password": unquote(url.password or ""),
        "dbname": unquote(url.path.lstrip("/")) or "postgres",
        "params": urlencode([(k, v) for k, v in query if k in _KEPT_PARAMETERS]),
    }


def cipher_key_for(settings: Settings) -> str:
    """The event store's encryption key; the embedded mode makes and keeps its own."""
    if settings.cipher_key:
        return settings.cipher_key
    if not settings.embedded:
        raise ConfigurationError(
            "SYNCYARD_CIPHER_KEY is required when NATS_URL or DATABASE_URL is set: access "
            "tokens are stored encrypted, and a production key must not be generated on the fly"
        )
    key_file = settings.state_dir / "cipher.key"
    if not key_file.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(AESCipher.create_key(32))
    return key_file.read_text().strip()


API_TOKEN_FILE = "api-token"  # noqa: S105 - the file's name; the token is inside


def api_tokens_for(settings: Settings) -> tuple[ApiToken, ...]:
    """Who may call the HTTP API; the embedded mode makes a local admin token and keeps it.

    Outside the embedded mode there is no fallback: an API with no token configured
    would either serve everyone or no one, so it does not start (fail closed).
    """
    if settings.api_tokens:
        return settings.api_tokens
    if not settings.embedded:
        raise ConfigurationError(
            "the HTTP API needs API tokens when NATS_URL and DATABASE_URL are set: set "
            "SYNCYARD_API_TOKENS (NAME:ROLE:SPACES:TOKEN, comma-separated; ROLE viewer, "
            "operator, admin or auditor; SPACES a|b or *) or SYNCYARD_API_TOKENS_FILE (one "
            "entry a line). It does not start without them"
        )
    token_file = settings.state_dir / API_TOKEN_FILE
    if not token_file.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        # Created 0600 in one step: no moment where another user could read it.
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return (local_admin(token_file.read_text().strip()),)


@dataclass
class Runtime:
    """Everything a running syncyard holds; owned by the exit stack that built it."""

    settings: Settings
    nc: NatsClient
    js: JetStreamContext
    # Where the relay opens its own connection (`run_components`): the only one
    # allowed to publish events, so the worker's, which answers requests, cannot.
    nats_url: str
    # Keys the relay's `Nats-Msg-Id`s (an HMAC of each notification), so nobody
    # can predict one and have JetStream drop the real event as its duplicate.
    event_id_key: bytes
    pool: asyncpg.Pool
    store: PostgresEventStore
    deps: Dependencies
    reader: NotificationLogReader
    board: BreakerBoard
    scheduler: Scheduler
    deferrals: ScheduledDeferrals
    institution_follower: InstitutionFollower | None = None
    # The HTTP API's own pool (None: it shares `pool`, as tests building a Runtime do).
    api_pool: asyncpg.Pool | None = None
    http_url: str | None = None
    relay: EventRelay | None = None
    sagas: PostgresSagaStore | None = None
    webhooks: WebhookLog | None = None
    projector: Projector | None = None
    # Where manual providers keep a person's entries (None: no API route to record them).
    manual_entries: PostgresManualEntries | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Every command's handler: the services' table joined with the sagas', bound to their store.
    handlers: Mapping[type[Command], Handler] = field(default_factory=lambda: dict(HANDLERS))

    async def execute(self, cmd: Command, trace: dict[str, str] | None = None) -> CommandResult:
        return await self.handlers[type(cmd)](self.deps, cmd, trace or {})


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    nats_url: str,
    database_url: str,
    *,
    cipher_key: str,
    nats_role: str = WORKER,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Runtime]:
    """Connect to NatsClient and PostgreSQL and build the services; start nothing yet.

    `nats_role` is the login of the main NATS connection: a process running only
    the relay and projector logs in as the relay, and leaves declaring the streams
    to the workers (the relay's role may not). A NATS that does not answer is
    retried without end; `stop`, when set meanwhile, abandons the connecting with
    `StoppedWhileStartingError` (a SIGTERM must not wait for NATS to come back).
    """
    async with contextlib.AsyncExitStack() as stack:
        credentials = settings.nats_credentials
        where = f"NATS at {mask_url(nats_url)}"
        log.info("connecting to %s as %s", where, nats_role)
        said = ConnectionLog(nats_role)
        nc = await unless_stopped(
            nats.connect(
                nats_url,
                name=f"syncyard-{nats_role}",
                max_reconnect_attempts=-1,
                **said.callbacks(),
                **connect_options(nats_role, credentials.get(nats_role)),
            ),
            stop,
            f"connecting to {where} (it never answered)",
        )
        said.watch(nc)
        stack.push_async_callback(nc.drain)
        js = nc.jetstream()
        if nats_role == WORKER:
            await declare_streams(js, dead_letter_max_age_s=settings.dead_letter_max_age_s)

        # Reads for every command, the relay, projector, breaker follower and API share it.
        # Followers (relay, projector, breakers, timer) and the API: they LISTEN and
        # take advisory locks, so their connections are reset when returned.
        pool = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
        stack.push_async_callback(close_pool, pool, "followers")
        # Per-command queries leave no session state behind: skipping the reset
        # saves a round trip on every release (see ../shared/LIMITS.md).
        query_pool = await asyncpg.create_pool(
            database_url,
            min_size=2,
            max_size=16,
            reset=_keep_session,
            server_settings=_statement_timeout(QUERY_STATEMENT_TIMEOUT_S),
        )
        stack.push_async_callback(close_pool, query_pool, "queries")
        # The HTTP API's own small pool: a burst of requests (or a slow query)
        # cannot take the connections the relay, projector and sagas need, nor
        # they the API's. Empty until the API is served (min_size=0).
        api_pool = await asyncpg.create_pool(
            database_url,
            min_size=0,
            max_size=settings.api_pool_size,
            server_settings=_statement_timeout(settings.api_statement_timeout_s),
        )
        stack.push_async_callback(close_pool, api_pool, "api")

        env = library_env(pg_parts(database_url), cipher_key)
        app = await open_application(database_url, env)
        keys = CredentialKeys(query_pool, store_key(cipher_key))
        await keys.setup()
        store = await stack.enter_async_context(PostgresEventStore(app, query_pool, keys=keys))

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, limit_per_host=256)
        )
        stack.push_async_callback(session.close)
        manual_entries = PostgresManualEntries(query_pool)
        await manual_entries.setup()
        providers = build_providers(session, settings.providers, manual_entries=manual_entries)
        feed_index = PostgresFeedIndex(query_pool, store)
        await feed_index.setup()
        store.feed_index = feed_index
        limiter = RateLimiter(query_pool, settings.rate_limits)
        await limiter.setup()
        board = BreakerBoard(
            PostgresBreakerRecorder(app), settings.breakers, lambda: datetime.now(UTC)
        )
        orchestrator = Orchestrator(
            providers,
            hierarchy=settings.hierarchy,
            call_timeout_s=settings.call_timeout_s,
            gate=board,
            bulkheads={
                name: Bulkhead(name, settings.bulkhead_max_concurrent, settings.bulkhead_max_wait_s)
                for name in providers
            },
            limiter=limiter,
            hedging=settings.hedging,
            health_margin=settings.health_margin,
        )
        orchestrator.health = LiveHealth()
        institutions, institution_follower = await open_institutions(
            app, pool, hierarchy=settings.hierarchy, providers=providers
        )
        orchestrator.directory = institutions.directory
        scheduler = Scheduler(pool, lease_s=settings.saga_lease_s, now=lambda: datetime.now(UTC))
        await scheduler.setup()
        webhooks = WebhookLog(pool)
        await webhooks.setup()
        deferrals = ScheduledDeferrals(scheduler)
        sagas = PostgresSagaStore(
            app,
            pool,
            EVENTS_TABLE,
            writer=store,
            scheduler=scheduler,
            link_deadline_s=settings.link_deadline_s,
        )
        deps = Dependencies(
            deferrals=deferrals,
            institutions=institutions,
            store=store,
            orchestrator=orchestrator,
            known_providers=frozenset(providers),
            retry_policies=settings.retry,
            sync_max_age=timedelta(seconds=settings.sync_max_age_s),
            link_max_wait=timedelta(seconds=settings.link_deadline_s),
            feed_index=feed_index,
            feed=ProjectedFeedReader(query_pool),
            relink=RelinkPolicy(after=settings.relink_after, hierarchy=dict(settings.hierarchy)),
            checkpoint=sync_crash_hook(),
            breakers=board,
        )
        yield Runtime(
            settings=settings,
            nc=nc,
            js=js,
            nats_url=nats_url,
            event_id_key=event_id_key(cipher_key),
            pool=pool,
            api_pool=api_pool,
            store=store,
            deps=deps,
            reader=NotificationLogReader(EVENTS_TABLE, app.mapper),
            board=board,
            scheduler=scheduler,
            deferrals=deferrals,
            institution_follower=institution_follower,
            sagas=sagas,
            webhooks=webhooks,
            manual_entries=manual_entries,
            handlers={**HANDLERS, **saga_handlers(sagas)},
        )


def _api_app(runtime: Runtime, tokens: Collection[ApiToken]) -> web.Application:
    """The HTTP API: the read models' routes, and those of the parts this runtime holds."""
    pool = runtime.api_pool or runtime.pool
    web_app = create_app(
        pool,
        lambda: runtime.nc.is_connected,
        tokens=tokens,
        read_settings=runtime.settings.read_models,
        events_table=EVENTS_TABLE,
    )
    items = ProjectedLinkedItems(pool, EVENTS_TABLE)
    if runtime.webhooks is not None:
        web_app.add_routes(webhook_routes(runtime.deps, items, runtime.webhooks))
        web_app[OPENAPI_OPERATIONS].update(WEBHOOK_OPERATIONS)
    if runtime.sagas is not None and runtime.webhooks is not None:
        web_app.add_routes(saga_routes(runtime.deps, runtime.sagas, runtime.webhooks, items))
        web_app[OPENAPI_OPERATIONS].update(SAGA_OPERATIONS)
    if runtime.manual_entries is not None:
        web_app.add_routes(manual_routes(runtime.manual_entries))
        web_app[OPENAPI_OPERATIONS].update(MANUAL_OPERATIONS)
    web_app.add_routes(breaker_routes(runtime.execute))
    web_app[OPENAPI_OPERATIONS].update(BREAKER_OPERATIONS)
    return web_app


def status_pollers(runtime: Runtime) -> list[ProviderStatusPoller]:
    """A poller per provider that publishes its banks' status (Plaid), unless turned off."""
    interval = runtime.settings.provider_status_interval_s
    institutions = runtime.deps.institutions
    if interval <= 0 or institutions is None:
        return []
    return [
        ProviderStatusPoller(
            runtime.pool, runtime.board, institutions.directory, adapter, interval_s=interval
        )
        for adapter in runtime.deps.orchestrator.providers.values()
        if isinstance(adapter, PlaidAdapter)
    ]


async def _open_relay(
    runtime: Runtime, stack: contextlib.AsyncExitStack, stop: asyncio.Event
) -> EventRelay:
    """The relay on a NATS connection of its own: only a process that runs the relay
    logs in as the relay, the one role that may publish events."""
    said = ConnectionLog("relay's own")
    relay_nc = await unless_stopped(
        nats.connect(
            runtime.nats_url,
            name="syncyard-relay",
            max_reconnect_attempts=-1,
            **said.callbacks(),
            **connect_options(RELAY, runtime.settings.nats_credentials.get(RELAY)),
        ),
        stop,
        f"connecting the relay to NATS at {mask_url(runtime.nats_url)} (it never answered)",
    )
    said.watch(relay_nc)
    stack.push_async_callback(relay_nc.drain)
    return EventRelay(runtime.pool, relay_nc, runtime.reader, msg_id_key=runtime.event_id_key)


async def _finish_started(tasks: Mapping[str, asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Stop the components that started and wait for them (done already after a stop)."""
    stop.set()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def run_components(
    runtime: Runtime,
    components: Collection[str],
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Runtime], None] | None = None,
) -> None:
    """Run the chosen components until `stop`; then finish in-flight work, in order."""
    unknown = set(components) - ALL_COMPONENTS
    if unknown:
        raise ConfigurationError(f"unknown components: {', '.join(sorted(unknown))}")
    settings = runtime.settings
    # Before anything starts: a missing token stops the whole start, not the API alone.
    api_tokens = api_tokens_for(settings) if "api" in components else ()
    async with contextlib.AsyncExitStack() as stack:
        tasks: dict[str, asyncio.Task[None]] = {}
        # The relay's connection first: a stop while it is still connecting abandons
        # the start before any task runs (none would be waited for, its pool closing).
        relay = await _open_relay(runtime, stack, stop) if "relay" in components else None
        # A start that fails halfway (the API's port taken) stops what it started,
        # before the relay's connection drains and the pools close under it.
        stack.push_async_callback(_finish_started, tasks, stop)
        if "projector" in components:
            runtime.projector = Projector(runtime.pool, runtime.reader, all_projections())
            tasks["projector"] = asyncio.create_task(
                supervise("projector", runtime.projector.run, stop)
            )
        if relay is not None:
            runtime.relay = relay
            tasks["relay"] = asyncio.create_task(supervise("relay", relay.run, stop))
        if "worker" in components:
            worker = CommandWorker(
                runtime.nc,
                runtime.js,
                runtime.execute,
                consumer=WORKER_CONSUMER,
                concurrency=settings.worker_concurrency,
                max_deliver=WORKER_MAX_DELIVER,
                ack_wait_s=WORKER_ACK_WAIT_S,
            )
            tasks["worker"] = asyncio.create_task(supervise("worker", worker.run, stop))
            # The worker's breakers learn every replica's calls and transitions from the log.
            follower = BreakerFollower(
                runtime.pool,
                runtime.reader,
                runtime.board,
                on_versions=runtime.store.observe_versions,
                health=runtime.deps.orchestrator.health,
                institutions=runtime.institution_follower,
            )
            tasks["breakers"] = asyncio.create_task(supervise("breakers", follower.run, stop))
            # Every worker fires durable timers: whichever claims a due one handles it.
            scheduler = runtime.scheduler
            runtime.deferrals.fire_with(runtime.js)
            if runtime.sagas is not None:
                saga_runner = SagaRunner(
                    runtime.deps,
                    runtime.sagas,
                    owner=scheduler.owner,
                    lease_s=scheduler.lease_s,
                    webhook_base=lambda: settings.public_url or runtime.http_url,
                    crash=CrashHook.from_env(),
                )
                advance_sagas_with(scheduler, saga_runner)
            tasks["timers"] = asyncio.create_task(supervise("timers", scheduler.run, stop))
        pollers = status_pollers(runtime) if "provider_status" in components else []
        if pollers:

            async def poll_all(stop: asyncio.Event) -> None:
                await asyncio.gather(*(p.run(stop) for p in pollers))

            tasks["provider_status"] = asyncio.create_task(
                supervise("provider_status", poll_all, stop)
            )
        if "api" in components:
            runner = web.AppRunner(_api_app(runtime, api_tokens), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, settings.http_host, settings.http_port)
            await site.start()
            host, port = runner.addresses[0][:2]  # the real port when settings ask for 0
            runtime.http_url = f"http://{host}:{port}"
        if on_ready is not None:
            on_ready(runtime)
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        stopper.cancel()
        # Worker first (it finishes in-flight commands), then the followers.
        for name in (
            "worker",
            "provider_status",
            "timers",
            "breakers",
            "institutions",
            "relay",
            "projector",
        ):
            if name in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await tasks[name]

"""What integration tests and benchmarks share: syncyard running in this process on real
NATS and PostgreSQL, an upstream service that sends it commands, links the sandbox accepts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import msgspec
import nats.js.errors
from eventsourcing.cryptography import AESCipher
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig

from events.codec import decode_result, encode
from events.commands import Command, RegisterConnection, SyncTransactions
from events.results import CommandResult
from events.subjects import (
    EVENT_STREAM,
    HEADER_COMMAND_ID,
    HEADER_MSG_ID,
    HEADER_SPACE_ID,
    command_msg_id,
    command_subject,
)
from infra.bootstrap import ALL_COMPONENTS, Runtime, open_runtime, run_components
from infra.config import Settings, load_settings
from infra.http.auth import parse_tokens
from infra.nats_roles import ANALYTICS_CONSUMER
from services.providers.settings import ProviderSettings
from tests.support import bus
from tests.support.links import link_for
from tests.support.sandbox_admin import SandboxAdmin

CIPHER_KEY = AESCipher.create_key(32)
SPACE = "space-1"
T = TypeVar("T")


MX_WEBHOOK_CREDENTIALS = "mx-webhooks:sandbox-password"

# The HTTP API's tokens in tests, as SYNCYARD_API_TOKENS writes them: name → (role,
# spaces). `test-admin` (every space) is what tests send unless they test access;
# the others give every role, for every space and bound to one, to the access tests.
TEST_TOKENS: dict[str, tuple[str, str]] = {
    "test-admin": ("admin", "*"),
    "viewer": ("viewer", "*"),
    "operator": ("operator", "*"),
    "auditor": ("auditor", "*"),
    "admin-1": ("admin", SPACE),
    "viewer-1": ("viewer", SPACE),
    "operator-1": ("operator", SPACE),
    "auditor-1": ("auditor", SPACE),
    "viewer-2": ("viewer", "space-2"),
    "operator-2": ("operator", "space-2"),
    "auditor-2": ("auditor", "space-2"),
}


def token_of(name: str) -> str:
    return f"{name}-token-0123456789abcdef"


def auth(name: str = "test-admin") -> dict[str, str]:
    """The Authorization header of one of `TEST_TOKENS`."""
    return {"Authorization": f"Bearer {token_of(name)}"}


API_TOKENS_ENV = ",".join(
    f"{name}:{role}:{spaces}:{token_of(name)}" for name, (role, spaces) in TEST_TOKENS.items()
)
API_TOKENS = parse_tokens([("tests", entry) for entry in API_TOKENS_ENV.split(",")])
AUTH = auth()


def settings_for(
    sandbox_url: str, *, http_port: int = 0, concurrency: int = 64, nats_url: str | None = None
) -> Settings:
    """syncyard's settings against the sandbox; with `nats_url`, its logins to that NATS
    (`running_syncyard` fills them in itself, a bare `open_runtime` needs them)."""
    return Settings(
        nats_url=None,
        database_url=None,
        state_dir=Path("/nonexistent"),
        http_port=http_port,
        cipher_key=CIPHER_KEY,
        worker_concurrency=concurrency,
        call_timeout_s=2.0,
        api_tokens=API_TOKENS,
        nats_credentials=bus.credentials(nats_url) if nats_url else {},
        providers={
            name: ProviderSettings(
                name=name,
                base_url=f"{sandbox_url}/{name}",
                client_id="test-client",
                secret="test-secret",
                timeout_s=2.0,
                # The Basic credentials syncyard gave MX for its webhooks (Plaid signs its own).
                webhook_secret=MX_WEBHOOK_CREDENTIALS if name == "mx" else None,
            )
            for name in ("plaid", "mx")
        },
    )


def product_settings(sandbox: str, state_dir: Path) -> Settings:
    """What `syncyard up` loads with an empty environment, pointed at this test's sandbox,
    with the tests' API tokens and key."""
    settings = load_settings(
        {
            "SYNCYARD_SANDBOX_URL": sandbox,
            "SYNCYARD_STATE_DIR": str(state_dir),
            "SYNCYARD_HTTP_PORT": "0",
        }
    )
    assert settings.embedded
    return msgspec.structs.replace(settings, api_tokens=API_TOKENS, cipher_key=CIPHER_KEY)


@contextlib.asynccontextmanager
async def running_syncyard(
    settings: Settings,
    nats_url: str,
    database_url: str,
    components: frozenset[str] = ALL_COMPONENTS,
) -> AsyncIterator[Runtime]:
    """`components` of syncyard in this process, ready when this yields; stopped on exit."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    # The key the settings name, as `syncyard serve` does: a caller that reads the
    # store itself or starts processes on it uses the key it configured.
    cipher_key = settings.cipher_key or CIPHER_KEY
    if not settings.nats_credentials:  # log in as the server at `nats_url` lets syncyard
        settings = msgspec.structs.replace(settings, nats_credentials=bus.credentials(nats_url))
    async with open_runtime(settings, nats_url, database_url, cipher_key=cipher_key) as runtime:
        task = asyncio.create_task(
            run_components(runtime, components, stop, on_ready=lambda _: ready.set())
        )
        # Generous: on a shared two-core machine under a benchmark's load, starting
        # every component (read models migrated, followers caught up) can take seconds.
        await asyncio.wait_for(ready.wait(), 30)
        try:
            yield runtime
        finally:
            stop.set()
            await task


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float = 15.0
) -> T:
    """Poll until `accept(probe())`; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.05)


class Client:
    """An upstream service: sends commands over JetStream, collects result envelopes.

    It also keeps when each command was first published and when its first
    result arrived, so benchmarks time commands end to end with it.
    """

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.results: dict[str, list[CommandResult]] = {}
        # The same results by (space, command id): command ids are unique per space only.
        self.in_space: dict[tuple[str, str], list[CommandResult]] = {}
        self.finals: dict[str, CommandResult] = {}  # the first result without deferred_until
        self.sent_at: dict[str, float] = {}  # perf_counter() at the first publish
        self.first_at: dict[str, float] = {}  # perf_counter() at the first result
        self._arrived = asyncio.Condition()
        self._subs: list[Any] = []

    async def start(self) -> None:
        self._subs.append(await self.nc.subscribe("syncyard.result.>", cb=self._on_result))

    async def _on_result(self, msg: Any) -> None:
        arrived = time.perf_counter()
        result = decode_result(msg.data)
        headers = msg.headers or {}
        key = headers.get(HEADER_COMMAND_ID) or result.command_id
        self.results.setdefault(key, []).append(result)
        space = headers.get(HEADER_SPACE_ID, "")
        self.in_space.setdefault((space, key), []).append(result)
        self.first_at.setdefault(key, arrived)
        if result.deferred_until is None:
            self.finals.setdefault(key, result)
        async with self._arrived:
            self._arrived.notify_all()

    async def publish(
        self, cmd: Command, msg_id: str | None = None, headers: dict[str, str] | None = None
    ) -> bool:
        self.sent_at.setdefault(cmd.command_id, time.perf_counter())
        ack = await self.js.publish(
            command_subject(cmd.op),
            encode(cmd),
            headers={
                HEADER_MSG_ID: msg_id or command_msg_id(cmd.space_id, cmd.command_id),
                **(headers or {}),
            },
        )
        return not ack.duplicate

    async def publish_raw(self, op: str, payload: bytes, msg_id: str) -> None:
        await self.js.publish(command_subject(op), payload, headers={HEADER_MSG_ID: msg_id})

    async def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        # Woken by each result rather than polling: a benchmark's sequential
        # commands go out as soon as the previous one is answered.
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(done)
        except TimeoutError:
            return False
        return True

    async def result(self, command_id: str, timeout: float = 15.0) -> CommandResult:
        """The command's first result (a deferral counts)."""
        if not await self._wait(lambda: command_id in self.results, timeout):
            raise AssertionError(f"no result for {command_id} within {timeout}s")
        return self.results[command_id][0]

    async def result_in(
        self, space_id: str, command_id: str, timeout: float = 15.0
    ) -> CommandResult:
        """The first result of `command_id` sent in `space_id` (results say their space)."""
        key = (space_id, command_id)
        if not await self._wait(lambda: key in self.in_space, timeout):
            raise AssertionError(f"no result for {space_id}/{command_id} within {timeout}s")
        return self.in_space[key][0]

    async def send(self, cmd: Command, timeout: float = 15.0) -> CommandResult:
        await self.publish(cmd)
        return await self.result(cmd.command_id, timeout)

    def latency(self, command_id: str) -> float:
        """Seconds from the command's first publish to its first result."""
        return self.first_at[command_id] - self.sent_at[command_id]

    async def wait_final(self, ids: Iterable[str], timeout: float) -> bool:
        """Wait until every command has a final result; False if some had none in time."""
        wanted = set(ids)
        return await self._wait(lambda: wanted <= self.finals.keys(), timeout)


@contextlib.asynccontextmanager
async def client(nats_url: str) -> AsyncIterator[Client]:
    """An upstream service, logged in as the `upstream` role."""
    nc = await bus.connect(nats_url, bus.UPSTREAM)
    try:
        c = Client(nc)
        await c.start()
        yield c
    finally:
        await nc.drain()


def register(
    account: str, provider: str, command_id: str | None = None, *, space_id: str = SPACE
) -> RegisterConnection:
    link = link_for(provider, account)
    return RegisterConnection(
        command_id=command_id or f"reg-{provider}-{account}",
        space_id=space_id,
        account_id=account,
        provider=provider,
        item_id=link.item_id,
        access_token=link.access_token,
    )


def sync(
    account: str, command_id: str, *, space_id: str = SPACE, **fields: Any
) -> SyncTransactions:
    return SyncTransactions(command_id=command_id, space_id=space_id, account_id=account, **fields)


async def inject_fault(sandbox_url: str, **fault: Any) -> None:
    async with aiohttp.ClientSession() as http:
        await SandboxAdmin(http, sandbox_url).fault(**fault)


async def sandbox_calls(sandbox_url: str) -> Any:
    async with aiohttp.ClientSession() as http:
        return await SandboxAdmin(http, sandbox_url).calls()


async def stored_events(database_url: str) -> list[tuple[int, str, bytes]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT notification_id, topic, state FROM syncyard_events ORDER BY notification_id"
        )
    finally:
        await conn.close()
    return [(r["notification_id"], r["topic"].rsplit(":", 1)[-1], r["state"]) for r in rows]


async def stream_messages(nats_url: str, subject: str = "syncyard.evt.>") -> list[Any]:
    """Every message currently in the stream behind `subject`, read through a fresh consumer.

    Read as analytics reads the event stream, through the one consumer that
    login owns (`analytics`: it may create no other), deleted afterwards so the
    next read starts from the stream's first message again; other streams, as
    an operator (admin), through an ephemeral.
    """
    events = subject.startswith("syncyard.evt")
    nc = await bus.connect(nats_url, bus.ANALYTICS if events else bus.ADMIN)
    try:
        js = nc.jetstream()
        if events:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(EVENT_STREAM, ANALYTICS_CONSUMER)  # a crashed read's
            sub = await js.pull_subscribe(
                subject,
                durable=ANALYTICS_CONSUMER,
                config=ConsumerConfig(inactive_threshold=30),
            )
        else:
            sub = await js.pull_subscribe(subject, durable=None)
        out: list[Any] = []
        while True:
            try:
                batch = await sub.fetch(256, timeout=0.5)
            except TimeoutError:
                break
            out.extend(batch)
            for msg in batch:
                await msg.ack()
        await sub.unsubscribe()
        if events:
            await js.delete_consumer(EVENT_STREAM, ANALYTICS_CONSUMER)
        return out
    finally:
        await nc.drain()


def decode_json(data: bytes) -> Any:
    return msgspec.json.decode(data)


class Component:
    """`syncyard serve` in its own process, so it can be SIGKILLed like a crashed pod."""

    def __init__(self, components: str, env: dict[str, str]) -> None:
        self.components = components
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "infra.cli",
            "serve",
            "--components",
            self.components,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        output: list[bytes] = []
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
            if not line:
                raise AssertionError(
                    f"{self.components} died on start:\n{b''.join(output).decode()}"
                )
            output.append(line)
            if line.strip() == b"ready":
                break
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.readline():
            pass

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def gauge_values(metrics_reader: Any, metric: str, attribute: str) -> dict[str, int]:
    """The last value `metrics_reader` (an InMemoryMetricReader) saw of each series of
    the gauge `metric`, by its `attribute`."""
    from opentelemetry.sdk.metrics.export import NumberDataPoint  # noqa: PLC0415

    data = metrics_reader.get_metrics_data()
    assert data is not None
    return {
        str(point.attributes[attribute]): int(point.value)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for found in scope.metrics
        if found.name == metric
        for point in found.data.data_points
        if isinstance(point, NumberDataPoint) and point.attributes
    }

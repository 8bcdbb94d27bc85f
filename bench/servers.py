"""What every benchmark runs against: NATS, PostgreSQL, the provider sandbox, a settings.

Embedded servers in a temporary folder unless NATS_URL / DATABASE_URL name
others; the sandbox always in a process of its own, as a real provider is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from infra.config import Settings
from infra.embedded import EmbeddedNats, EmbeddedPostgres, find_free_port, wait_for_tcp
from services.providers.settings import ProviderSettings
from tests.support import bus
from tests.support.databases import create_database

# Fixed, not random: a benchmark's spawned processes import it again and must
# read what this one wrote. Benchmarks store nothing secret.
CIPHER_KEY = "0" * 43 + "="
# Finicity's adapter reads its secret as app key and partner secret.
SECRETS = {"finicity": "bench-app-key:bench-partner-secret"}


class Servers(NamedTuple):
    nats_url: str
    pg_url: str
    # None when NATS_URL / DATABASE_URL name servers this process did not start:
    # their CPU is then not ours to count.
    nats_pid: int | None
    postmaster_pid: int | None


@contextlib.asynccontextmanager
async def embedded_servers() -> AsyncIterator[Servers]:
    """NATS (with JetStream) and PostgreSQL, with their process ids where we started them."""
    with tempfile.TemporaryDirectory(prefix="syncyard-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            nats_url = os.environ.get("NATS_URL")
            nats_pid = None
            if not nats_url:
                server = await stack.enter_async_context(EmbeddedNats(Path(tmp)))
                nats_url, nats_pid = server.url, server.pid
                bus.register(nats_url, server.credentials)
            pg_url = os.environ.get("DATABASE_URL")
            postmaster_pid = None
            if not pg_url:
                postgres = await stack.enter_async_context(EmbeddedPostgres(Path(tmp)))
                pg_url, postmaster_pid = postgres.url, postgres.pid
            yield Servers(nats_url, pg_url, nats_pid, postmaster_pid)


@contextlib.asynccontextmanager
async def servers() -> AsyncIterator[tuple[str, str]]:
    """NATS (with JetStream) and PostgreSQL URLs, for as long as the context lasts."""
    async with embedded_servers() as running:
        yield running.nats_url, running.pg_url


async def fresh_database(pg_url: str) -> str:
    """A new database for one measure: no measure sees another's rows."""
    return await create_database(pg_url, "bench")


@contextlib.asynccontextmanager
async def sandbox_process(scenario: str = "none") -> AsyncIterator[tuple[str, int]]:
    """The sandbox in its own process, as a real provider is: its URL and process id.

    No scenario by default: the sandbox's own default (`calm`) adds 35 ms median
    latency to every call, which would swamp what these benchmarks measure.
    """
    port = find_free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "--port", str(port), "--scenario", scenario
    )
    try:
        await wait_for_tcp("127.0.0.1", port, 15.0)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        await proc.wait()


@contextlib.asynccontextmanager
async def sandbox(scenario: str = "none") -> AsyncIterator[str]:
    """The sandbox's URL, its CPU not ours (see `sandbox_process`)."""
    async with sandbox_process(scenario) as (url, _pid):
        yield url


def provider_settings(
    sandbox_url: str, providers: Iterable[str] = ("plaid", "mx")
) -> dict[str, ProviderSettings]:
    return {
        name: ProviderSettings(
            name=name,
            base_url=f"{sandbox_url}/{name}",
            client_id="bench",
            secret=SECRETS.get(name, "b"),
        )
        for name in providers
    }


def bench_settings(
    sandbox_url: str, providers: Iterable[str] = ("plaid", "mx"), **overrides: Any
) -> Settings:
    """syncyard's settings against the sandbox, with the product's defaults otherwise."""
    settings = Settings(
        nats_url=None,
        database_url=None,
        state_dir=Path(tempfile.gettempdir()),
        http_port=0,
        cipher_key=CIPHER_KEY,
        providers=provider_settings(sandbox_url, providers),
    )
    return msgspec.structs.replace(settings, **overrides)

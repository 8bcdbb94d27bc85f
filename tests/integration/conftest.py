"""Integration fixtures: the provider sandbox over real HTTP, and a running syncyard."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from infra.bootstrap import Runtime
from sandbox.app import create_sandbox_app
from tests.support import bus
from tests.support.harness import (
    API_TOKENS_ENV,
    CIPHER_KEY,
    Client,
    client,
    running_syncyard,
    settings_for,
)


@pytest.fixture(scope="session")
async def sandbox_url() -> AsyncIterator[str]:
    """The provider sandbox, served on a free loopback port for the whole session."""
    runner = web.AppRunner(create_sandbox_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def sandbox(sandbox_url: str) -> str:
    """The sandbox with no faults and zeroed call counts."""
    async with aiohttp.ClientSession() as http, http.post(f"{sandbox_url}/_admin/reset") as resp:
        assert resp.status in (200, 204)
    return sandbox_url


@pytest.fixture
async def syncyard(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> AsyncIterator[Runtime]:
    """Every component of syncyard, in this process, on a fresh database and JetStream."""
    async with running_syncyard(settings_for(sandbox), nats_url, database_url) as runtime:
        yield runtime


@pytest.fixture
async def upstream(nats_url: str, syncyard: Runtime) -> AsyncIterator[Client]:
    """An upstream service connected to the same NATS."""
    async with client(nats_url) as c:
        yield c


@pytest.fixture
async def component_env(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> dict[str, str]:
    return {
        **os.environ,
        "NATS_URL": nats_url,
        **bus.env(nats_url),
        "DATABASE_URL": database_url,
        "SYNCYARD_CIPHER_KEY": CIPHER_KEY,
        "SYNCYARD_API_TOKENS": API_TOKENS_ENV,
        "SYNCYARD_PLAID_BASE_URL": f"{sandbox}/plaid",
        "SYNCYARD_MX_BASE_URL": f"{sandbox}/mx",
        # The sandbox speaks http:// only, and holds no secret.
        "SYNCYARD_INSECURE_PROVIDERS": "1",
        "SYNCYARD_PLAID_CLIENT_ID": "sandbox-client",
        "SYNCYARD_PLAID_SECRET": "sandbox-secret",
        "SYNCYARD_MX_CLIENT_ID": "sandbox-client",
        "SYNCYARD_MX_SECRET": "sandbox-secret",
        "SYNCYARD_HTTP_PORT": "0",
        "SYNCYARD_WORKER_CONCURRENCY": "32",
    }

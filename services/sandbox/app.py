"""The provider sandbox: Plaid under /plaid, MX under /mx, faults under /_admin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from aiohttp import web

from services.sandbox.admin import ADMIN_ROUTES
from services.sandbox.faults import FaultBook
from services.sandbox.middleware import FAULT_BOOK, SEED
from services.sandbox.mx_api import create_mx_app
from services.sandbox.plaid_api import create_plaid_app

PLAID_PREFIX = "/plaid"
MX_PREFIX = "/mx"


class SandboxAddress(msgspec.Struct, frozen=True, kw_only=True):
    """Where a running sandbox answers: point each adapter's base_url here."""

    url: str

    @property
    def plaid_url(self) -> str:
        return self.url + PLAID_PREFIX

    @property
    def mx_url(self) -> str:
        return self.url + MX_PREFIX


def create_sandbox_app(seed: int = 7) -> web.Application:
    """Both fake providers and the admin API in one app; `seed` fixes data and dice."""
    app = web.Application()
    app[SEED] = seed
    app[FAULT_BOOK] = FaultBook(seed)
    app.router.add_routes(ADMIN_ROUTES)
    app.add_subapp(PLAID_PREFIX, create_plaid_app(PLAID_PREFIX))
    app.add_subapp(MX_PREFIX, create_mx_app(MX_PREFIX))
    return app


@asynccontextmanager
async def running_sandbox(
    host: str = "127.0.0.1", port: int = 0, *, seed: int = 7
) -> AsyncIterator[SandboxAddress]:
    """Serve the sandbox until the block exits; port 0 picks a free port."""
    # A short shutdown grace: a latency fault may hold a request open.
    runner = web.AppRunner(create_sandbox_app(seed), shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield SandboxAddress(url=f"http://{bound_host}:{bound_port}")
    finally:
        await runner.cleanup()


async def run_sandbox(host: str = "127.0.0.1", port: int = 8700, *, seed: int = 7) -> None:
    """Serve the sandbox until cancelled."""
    async with running_sandbox(host, port, seed=seed) as address:
        print(f"provider sandbox: plaid at {address.plaid_url}, mx at {address.mx_url}")
        await asyncio.Event().wait()

"""The provider sandbox: each provider under its own prefix, faults under /_admin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import msgspec
from aiohttp import web

from sandbox.admin import ADMIN_ROUTES
from sandbox.belvo_api import create_belvo_app
from sandbox.bitso_api import create_bitso_app
from sandbox.chain_api import create_chain_app
from sandbox.faults import FaultBook
from sandbox.finicity_api import create_finicity_app
from sandbox.idempotency import (
    IDEMPOTENCY,
    IDEMPOTENCY_ROUTES,
    IdempotencyBook,
    idempotent_writes,
)
from sandbox.item_webhooks import ITEM_WEBHOOK_ROUTES, scenario_webhooks
from sandbox.link_admin import LINK_ADMIN_ROUTES
from sandbox.links import LINKS, LinkBook
from sandbox.middleware import FAULT_BOOK, SEED, TRUTH
from sandbox.mx_api import create_mx_app
from sandbox.plaid_api import create_plaid_app
from sandbox.scenarios import load as load_scenario
from sandbox.truth import TruthBook
from sandbox.truth_admin import TRUTH_ROUTES
from sandbox.webhooks import PLAID_SIGNING_KEY, plaid_signing_key, webhook_session

PLAID_PREFIX = "/plaid"
MX_PREFIX = "/mx"
BITSO_PREFIX = "/bitso"
CHAIN_PREFIX = "/chain"


class SandboxAddress(msgspec.Struct, frozen=True, kw_only=True):
    """Where a running sandbox answers: point each adapter's base_url here."""

    url: str

    @property
    def plaid_url(self) -> str:
        return self.url + PLAID_PREFIX

    @property
    def mx_url(self) -> str:
        return self.url + MX_PREFIX

    @property
    def bitso_url(self) -> str:
        return self.url + BITSO_PREFIX

    @property
    def chain_url(self) -> str:
        return self.url + CHAIN_PREFIX


def create_sandbox_app(
    seed: int = 7, scenario: str | None = None, clock: Callable[[], float] = time.monotonic
) -> web.Application:
    """Every fake provider and the admin API in one app; `seed` fixes data and dice.

    `scenario` names a file in `scenarios/` to run from the start (and to return
    to on `/_admin/reset`); None runs without faults until some are armed.
    `clock` times scenario timelines (tests pass one they move by hand).
    """
    # Outside each provider's fault middleware: a replayed answer does not draw a fault.
    app = web.Application(middlewares=[idempotent_writes])
    app[SEED] = seed
    app[IDEMPOTENCY] = IdempotencyBook()
    default = load_scenario(scenario) if scenario else None
    app[FAULT_BOOK] = FaultBook(seed, clock, default_scenario=default)
    app[LINKS] = LinkBook(seed)
    app[TRUTH] = TruthBook(seed)
    app[PLAID_SIGNING_KEY] = plaid_signing_key(seed)
    app.cleanup_ctx.append(webhook_session)
    app.cleanup_ctx.append(scenario_webhooks)
    app.router.add_routes(ADMIN_ROUTES)
    app.router.add_routes(LINK_ADMIN_ROUTES)
    app.router.add_routes(ITEM_WEBHOOK_ROUTES)
    app.router.add_routes(IDEMPOTENCY_ROUTES)
    app.router.add_routes(TRUTH_ROUTES)
    app.add_subapp(PLAID_PREFIX, create_plaid_app(PLAID_PREFIX))
    app.add_subapp(MX_PREFIX, create_mx_app(MX_PREFIX))
    app.add_subapp(BITSO_PREFIX, create_bitso_app(BITSO_PREFIX))
    app.add_subapp(CHAIN_PREFIX, create_chain_app(CHAIN_PREFIX))
    app.add_subapp("/finicity", create_finicity_app("/finicity"))
    app.add_subapp("/belvo", create_belvo_app("/belvo"))
    return app


@asynccontextmanager
async def running_sandbox(
    host: str = "127.0.0.1", port: int = 0, *, seed: int = 7, scenario: str | None = None
) -> AsyncIterator[SandboxAddress]:
    """Serve the sandbox until the block exits; port 0 picks a free port."""
    # A short shutdown grace: a latency fault may hold a request open.
    runner = web.AppRunner(create_sandbox_app(seed, scenario), shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield SandboxAddress(url=f"http://{bound_host}:{bound_port}")
    finally:
        await runner.cleanup()


async def run_sandbox(
    host: str = "127.0.0.1", port: int = 8700, *, seed: int = 7, scenario: str | None = "calm"
) -> None:
    """Serve the sandbox until cancelled, running `scenario` (default `calm`)."""
    async with running_sandbox(host, port, seed=seed, scenario=scenario) as address:
        print(f"provider sandbox: plaid at {address.plaid_url}, mx at {address.mx_url}")
        print(
            f"scenario {scenario or 'none'}; switch with: curl -X PUT {address.url}/_admin/scenario"
            ' -d \'{"name": "plaid-outage"}\''
        )
        await asyncio.Event().wait()

"""A webhook endpoint for tests: records what the sandbox POSTs to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from aiohttp import web


class Delivery(msgspec.Struct, frozen=True):
    headers: dict[str, str]
    body: bytes


class Receiver(msgspec.Struct, frozen=True):
    url: str
    deliveries: asyncio.Queue[Delivery]

    async def next(self, timeout_s: float = 5.0) -> Delivery:
        return await asyncio.wait_for(self.deliveries.get(), timeout_s)


@asynccontextmanager
async def receiving_webhooks() -> AsyncIterator[Receiver]:
    """Serve POST /hooks on a free loopback port; each delivery lands in the queue."""
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await deliveries.put(Delivery(dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield Receiver(url=f"http://{host}:{port}/hooks", deliveries=deliveries)
    finally:
        await runner.cleanup()

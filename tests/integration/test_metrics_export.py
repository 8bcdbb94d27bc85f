"""The projection lag gauge leaves the process over OTLP/HTTP when an endpoint is set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from infra.telemetry import otlp_meter_provider
from projections.lag import record_live_lag, register_lag_gauge

pytestmark = pytest.mark.integration


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, list[tuple[str, bytes]]]]:
    """A bare OTLP/HTTP receiver: keeps each request's path and protobuf body."""
    received: list[tuple[str, bytes]] = []

    async def accept(request: web.Request) -> web.Response:
        received.append((request.path, await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/metrics", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", received
    finally:
        await runner.cleanup()


async def test_the_lag_gauge_is_exported_with_each_projection_s_value(
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    endpoint, received = collector
    provider = otlp_meter_provider(endpoint, interval_ms=60_000)
    try:
        register_lag_gauge(provider)
        record_live_lag({"provider_health": 1234, "sync_log": 0})
        # The exporter posts from its own thread; the receiver answers on this loop.
        flushed = await asyncio.to_thread(provider.force_flush, 10_000)
    finally:
        await asyncio.to_thread(provider.shutdown)
        record_live_lag({})

    assert flushed
    bodies = [body for path, body in received if path == "/v1/metrics"]
    assert bodies, "nothing reached the collector"
    payload = b"".join(bodies)
    assert b"syncyard.projection.lag" in payload
    assert b"provider_health" in payload and b"sync_log" in payload
    assert b"syncyard" in payload  # the service.name resource attribute

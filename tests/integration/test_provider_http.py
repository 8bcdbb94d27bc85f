"""Provider responses are read under a size cap: a huge body is a classified error, not a crash."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from services.providers.base import ProviderCallError
from services.providers.http import MAX_RESPONSE_BYTES, send

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


class HugeBodies:
    """A fake provider whose answers are far bigger than any real one; counts what it sent."""

    def __init__(self) -> None:
        self.sent = 0

    async def endless(self, request: web.Request) -> web.StreamResponse:
        # Chunked, no Content-Length: only reading tells how big it is.
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * MIB
        with contextlib.suppress(ConnectionError):
            for _ in range(200):  # 200 MiB, unless the reader hangs up first
                await response.write(chunk)
                self.sent += len(chunk)
        return response

    async def declared(self, request: web.Request) -> web.Response:
        return web.Response(body=b"{}", headers={"Content-Length": str(64 * MIB)})

    async def small(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


@pytest.fixture
async def provider() -> AsyncIterator[tuple[str, HugeBodies]]:
    bodies = HugeBodies()
    app = web.Application()
    app.router.add_get("/endless", bodies.endless)
    app.router.add_get("/declared", bodies.declared)
    app.router.add_get("/small", bodies.small)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", bodies
    finally:
        await runner.cleanup()


async def call(url: str, max_body_bytes: int = MAX_RESPONSE_BYTES) -> bytes:
    async with aiohttp.ClientSession() as session:
        reply = await send(
            session,
            "GET",
            url,
            provider="fake",
            endpoint="/x",
            timeout_s=30,
            max_body_bytes=max_body_bytes,
        )
        return reply.body


async def test_a_huge_streamed_body_is_an_invalid_response_read_no_further_than_the_cap(
    provider: tuple[str, HugeBodies],
) -> None:
    base, bodies = provider

    with pytest.raises(ProviderCallError) as caught:
        await call(f"{base}/endless")

    error = caught.value.error
    assert (error.code, error.type, error.retryable) == ("invalid_response", "unknown", True)
    assert f"larger than {MAX_RESPONSE_BYTES} bytes" in error.message
    # It hung up soon after the cap, rather than reading all 200 MiB.
    assert bodies.sent < MAX_RESPONSE_BYTES + 32 * MIB


async def test_a_declared_length_over_the_adapters_own_cap_is_refused_before_reading(
    provider: tuple[str, HugeBodies],
) -> None:
    base, _ = provider

    with pytest.raises(ProviderCallError, match="larger than 1048576 bytes"):
        await call(f"{base}/declared", max_body_bytes=MIB)
    with pytest.raises(ProviderCallError, match="larger than 1024 bytes"):
        await call(f"{base}/endless", max_body_bytes=1024)
    assert await call(f"{base}/small", max_body_bytes=1024) == b'{"ok": true}'

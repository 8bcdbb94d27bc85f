"""A recording proxy: adapters talk to the sandbox through it, every exchange is kept.

Point an adapter's `base_url` at `f"{proxy.url}/plaid"` (or `/mx`); the
proxy forwards each request unchanged to the sandbox and records the request
as the adapter sent it and the answer as the sandbox gave it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import aiohttp
from aiohttp import web

from tests.specs.openapi import Exchange, Provider

_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}


class Recorder:
    def __init__(self, url: str) -> None:
        self.url = url
        self.exchanges: list[Exchange] = []

    def of(self, provider: Provider) -> list[Exchange]:
        return [e for e in self.exchanges if e.provider == provider]


@asynccontextmanager
async def recording_proxy(sandbox: str) -> AsyncIterator[Recorder]:
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        recorder = Recorder("")

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            async with http.request(
                request.method,
                sandbox + request.path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as answer:
                raw = await answer.read()
                content_type = answer.headers.get("Content-Type", "")
                status = answer.status
            prefix, _, rest = request.path.lstrip("/").partition("/")
            if prefix in ("plaid", "mx"):
                recorder.exchanges.append(
                    Exchange(
                        provider=cast("Provider", prefix),
                        method=request.method,
                        path="/" + rest,
                        query=list(request.query.items()),
                        headers=dict(request.headers),
                        body=body,
                        status=status,
                        content_type=content_type,
                        answer=raw,
                    )
                )
            response = web.Response(status=status, body=raw)
            if content_type:
                response.headers["Content-Type"] = content_type
            return response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        recorder.url = f"http://{host}:{port}"
        try:
            yield recorder
        finally:
            await runner.cleanup()

"""The sandbox's fault middleware asks what a call is about only when a fault needs to know."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from sandbox.faults import Fault, FaultBook, RequestContext
from sandbox.middleware import FAULT_BOOK, fault_middleware

pytestmark = pytest.mark.integration


class CountingContext:
    """A context resolver that says every call is about one bank, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: web.Request) -> RequestContext:
        self.calls += 1
        return RequestContext(institution_id="ins_1", institution_name="One Bank", region="US")


def refuse(request: web.Request, fault: Fault) -> web.Response | None:
    return web.Response(status=fault.status or 500) if fault.status else None


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
def book() -> FaultBook:
    return FaultBook(seed=7)


@pytest.fixture
def context() -> CountingContext:
    return CountingContext()


@pytest.fixture
async def provider_url(book: FaultBook, context: CountingContext) -> AsyncIterator[str]:
    app = web.Application(middlewares=[fault_middleware("plaid", "", refuse, context=context)])
    app[FAULT_BOOK] = book
    app.router.add_post("/transactions/sync", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def statuses(url: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as http:
        found = []
        for _ in range(n):
            async with http.post(f"{url}/transactions/sync") as response:
                found.append(response.status)
        return found


async def test_calls_are_not_resolved_to_a_bank_while_no_fault_is_aimed_at_one(
    provider_url: str, book: FaultBook, context: CountingContext
) -> None:
    book.arm(Fault(provider="plaid", status=503, count=1))
    book.arm(Fault(provider="mx", status=500, region="US"))

    assert await statuses(provider_url, 3) == [503, 200, 200]
    assert context.calls == 0
    assert book.calls()["plaid"]["/transactions/sync"] == {"calls": 3, "faulted": 1}


@pytest.mark.parametrize(
    "fault",
    [
        Fault(provider="plaid", status=503, count=2, institution="ins_1"),
        Fault(provider="plaid", status=503, count=2, institution_name="One Bank"),
        Fault(provider="plaid", status=503, count=2, region="US"),
    ],
)
async def test_a_fault_aimed_at_a_bank_or_region_still_reaches_the_calls_about_it(
    provider_url: str, book: FaultBook, context: CountingContext, fault: Fault
) -> None:
    book.arm(fault)

    assert await statuses(provider_url, 3) == [503, 503, 200]
    assert context.calls == 2


async def test_a_fault_aimed_at_another_bank_leaves_these_calls_alone(
    provider_url: str, book: FaultBook, context: CountingContext
) -> None:
    book.arm(Fault(provider="plaid", status=503, institution="ins_2"))

    assert await statuses(provider_url, 2) == [200, 200]
    assert context.calls == 2

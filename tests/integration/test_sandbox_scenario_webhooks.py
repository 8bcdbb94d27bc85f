"""A scenario's item webhooks: each linked Item told, signed, on the scenario's timeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import jwt
import msgspec
import pytest
from aiohttp import web

from sandbox.app import create_sandbox_app
from sandbox.links import LINKS, PlaidItem
from sandbox.middleware import FAULT_BOOK
from sandbox.scenarios import load, parse
from sandbox.webhooks import PLAID_SIGNING_KEY

pytestmark = pytest.mark.integration

SOON = """
name = "soon"

[[item_webhooks]]
at_s = 0.05
webhook_code = "PENDING_EXPIRATION"
consent_expires_in_days = 7

[[item_webhooks]]
at_s = 0.1
webhook_code = "PENDING_EXPIRATION"
consent_expires_in_days = 7

[[item_webhooks]]
at_s = 0.15
webhook_code = "PENDING_DISCONNECT"
reason = "INSTITUTION_TOKEN_EXPIRATION"
"""


class Receiver:
    """An app's webhook route: what the sandbox sent it, and the JWT each came with."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, object], str]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((msgspec.json.decode(body), request.headers["Plaid-Verification"]))
        self.arrived.set()
        return web.json_response({})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/hook", got.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield got, f"http://{host}:{port}/hook"
    await runner.cleanup()


@pytest.fixture
async def sandbox_app() -> AsyncIterator[web.Application]:
    app = create_sandbox_app(seed=7)
    runner = web.AppRunner(app)
    await runner.setup()  # starts the scenario-webhook runner
    yield app
    await runner.cleanup()


async def test_a_scenario_tells_every_linked_item_signed_in_the_order_of_its_timeline(
    sandbox_app: web.Application, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    links = sandbox_app[LINKS]
    links.plaid_items["access-sandbox-one"] = PlaidItem(webhook=url, products=("transactions",))
    links.plaid_items["access-sandbox-mute"] = PlaidItem(webhook=None, products=("transactions",))

    sandbox_app[FAULT_BOOK].load_scenario(parse(SOON))
    async with asyncio.timeout(10):
        while len(got.received) < 3:
            got.arrived.clear()
            await got.arrived.wait()

    (notice, token), (again, _), (disconnect, _) = got.received
    item_id = links.plaid_item_id("access-sandbox-one")
    assert notice["webhook_code"] == "PENDING_EXPIRATION" and notice["item_id"] == item_id
    assert str(notice["consent_expiration_time"]).endswith("Z")
    # Sent again, the notice names the same end: syncyard records it once.
    assert again["consent_expiration_time"] == notice["consent_expiration_time"]
    assert disconnect["webhook_code"] == "PENDING_DISCONNECT"
    assert disconnect["reason"] == "INSTITUTION_TOKEN_EXPIRATION"
    # Signed as Plaid signs: an ES256 JWT by the sandbox's published key.
    key = sandbox_app[PLAID_SIGNING_KEY]
    claims = jwt.decode(token, key.pem, algorithms=["ES256"])
    assert "request_body_sha256" in claims


async def test_another_scenario_cancels_what_the_last_had_yet_to_send(
    sandbox_app: web.Application, receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    sandbox_app[LINKS].plaid_items["access-sandbox-one"] = PlaidItem(
        webhook=url, products=("transactions",)
    )
    sandbox_app[FAULT_BOOK].load_scenario(load("consent-expiring"))  # first notice at 10 s
    sandbox_app[FAULT_BOOK].load_scenario(None)
    await asyncio.sleep(0.3)
    assert got.received == []

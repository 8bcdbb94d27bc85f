"""A local Esplora: address stats, newest-first paged history, the chain tip, plain-text errors."""

from __future__ import annotations

import re
from http import HTTPStatus

from aiohttp import web

from sandbox.chain_data import TIP_HEIGHT, fake_wallet, stats
from sandbox.faults import Fault
from sandbox.middleware import SEED, fault_middleware

PAGE = 25  # Esplora's fixed page of confirmed transactions
MEMPOOL_LIMIT = 50
# Format only, as a cheap stand-in for Esplora's full decoding: base58 or bech32.
_ADDRESS = re.compile(
    r"[123mn][1-9A-HJ-NP-Za-km-z]{25,34}|(bc|tb|bcrt)1[02-9ac-hj-np-z]{8,87}|(BC|TB|BCRT)1[02-9AC-HJ-NP-Z]{8,87}"
)


def error_response(status: int, message: str) -> web.Response:
    # Esplora's errors are plain text, not JSON.
    return web.Response(status=status, text=message, content_type="text/plain")


def _fault_response(request: web.Request, fault: Fault) -> web.Response | None:
    if fault.error_code is None and fault.status is None:
        return None
    status = fault.status or 500
    return error_response(status, fault.error_code or _phrase(status))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status Python does not name, such as 420
        return "Error"


def _address(request: web.Request) -> str | web.Response:
    address = request.match_info["address"]
    if not _ADDRESS.fullmatch(address):
        return error_response(400, "Invalid Bitcoin address")
    return address


async def address_info(request: web.Request) -> web.Response:
    address = _address(request)
    if isinstance(address, web.Response):
        return address
    confirmed, mempool = fake_wallet(request.config_dict[SEED], address)
    return web.json_response(
        {
            "address": address,
            "chain_stats": stats(address, confirmed),
            "mempool_stats": stats(address, mempool),
        }
    )


async def address_txs(request: web.Request) -> web.Response:
    """Mempool transactions first, then the newest page of confirmed ones."""
    address = _address(request)
    if isinstance(address, web.Response):
        return address
    confirmed, mempool = fake_wallet(request.config_dict[SEED], address)
    return web.json_response(list(mempool[:MEMPOOL_LIMIT]) + list(confirmed[:PAGE]))


async def chain_txs(request: web.Request) -> web.Response:
    """Confirmed transactions newest first, 25 at a time after `last_txid`."""
    address = _address(request)
    if isinstance(address, web.Response):
        return address
    confirmed, _ = fake_wallet(request.config_dict[SEED], address)
    start = 0
    last = request.match_info.get("last_txid")
    if last is not None:
        ids = [t["txid"] for t in confirmed]
        if last not in ids:
            return error_response(400, "Invalid last_seen_txid")
        start = ids.index(last) + 1
    return web.json_response(list(confirmed[start : start + PAGE]))


async def tip_height(request: web.Request) -> web.Response:
    return web.Response(text=str(TIP_HEIGHT), content_type="text/plain")


def create_chain_app(prefix: str = "/chain") -> web.Application:
    """The chain reader's routes, to be mounted under `prefix` on the sandbox app."""
    app = web.Application(middlewares=[fault_middleware("blockchain", prefix, _fault_response)])
    app.router.add_get("/address/{address}", address_info)
    app.router.add_get("/address/{address}/txs", address_txs)
    app.router.add_get("/address/{address}/txs/chain", chain_txs)
    app.router.add_get("/address/{address}/txs/chain/{last_txid}", chain_txs)
    app.router.add_get("/blocks/tip/height", tip_height)
    return app

"""Idempotency keys at the fake providers: a keyed write happens once, its answer replays.

A request that changes something (any method but GET) and carries an
`Idempotency-Key` header runs its handler once per (path, key); a repeat
gets the first successful answer back without doing anything again, as
Stripe-style APIs behave. Failed answers are not kept, so a retry after a
fault really retries. Requests without the header behave as before.

`GET /_admin/idempotency` shows, per path and key, how many times the
handler's side effect ran (`effects`, 1 unless something is wrong) and how
many repeats were answered from memory (`replays`): the tests' proof that a
saga resumed after a crash did not repeat a provider call's side effect.
"""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

IDEMPOTENCY_HEADER = "Idempotency-Key"


class _Kept(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    content_type: str


class KeyUse(msgspec.Struct, kw_only=True):
    effects: int = 0
    replays: int = 0


class IdempotencyBook:
    """Answers kept by (path, key), and how each key was used, for one sandbox."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.answers: dict[tuple[str, str], _Kept] = {}
        # Two concurrent requests with one key: the second waits for the first's answer.
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.uses: dict[str, dict[str, KeyUse]] = {}

    def use(self, path: str, key: str) -> KeyUse:
        return self.uses.setdefault(path, {}).setdefault(key, KeyUse())

    def report(self) -> dict[str, dict[str, dict[str, int]]]:
        return {
            path: {key: msgspec.to_builtins(use) for key, use in keys.items()}
            for path, keys in self.uses.items()
        }


IDEMPOTENCY = web.AppKey("idempotency", IdempotencyBook)


@web.middleware
async def idempotent_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if request.method == "GET" or not key or request.path.startswith("/_admin"):
        return await handler(request)
    book = request.config_dict[IDEMPOTENCY]
    slot = (request.path, key)
    async with book.locks.setdefault(slot, asyncio.Lock()):
        kept = book.answers.get(slot)
        if kept is not None:
            book.use(request.path, key).replays += 1
            return web.Response(status=kept.status, body=kept.body, content_type=kept.content_type)
        response = await handler(request)
        if isinstance(response, web.Response) and 200 <= response.status < 300:
            book.use(request.path, key).effects += 1
            body = response.body if isinstance(response.body, bytes) else b""
            book.answers[slot] = _Kept(
                response.status, body, response.content_type or "application/json"
            )
        return response


async def show_idempotency(request: web.Request) -> web.Response:
    """GET /_admin/idempotency: {path: {key: {effects, replays}}}."""
    return web.json_response(request.app[IDEMPOTENCY].report())


IDEMPOTENCY_ROUTES = [web.get("/_admin/idempotency", show_idempotency)]

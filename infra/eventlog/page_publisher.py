"""A page of messages onto JetStream: all in flight at once, one wait for all their acks.

`JetStreamContext.publish` makes each message a request of its own: under
`gather`, a task, a timer, a future and a reply token per message, and each ack
decoded with `json` into a `PubAck`. Those were most of the relay's CPU. The
relay needs only to know that every message of the page was stored, so here a
page's acks come to one reply subject, on one subscription held for the
connection's lifetime, and count down one future.

Semantics are those of publishing each with `js.publish` under `gather`: the
page succeeds only when every message was acked without an error; an error
ack, no stream for a subject, or a missing ack within the timeout fails it
(`nats.js.errors.APIError`, `NoStreamResponseError`, `nats.errors.TimeoutError`),
and the caller publishes the page again (JetStream drops the repeats by
`Nats-Msg-Id`). Acks of an earlier, failed page are told apart by their reply
subject and ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
import nats.errors
import nats.js.api
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

DEFAULT_TIMEOUT_S = 5.0  # what `js.publish` waits for each ack by default
_NO_RESPONDERS = "503"  # the status nats-server answers when no stream takes the subject


class OutgoingMessage(msgspec.Struct, frozen=True):
    subject: str
    payload: bytes
    headers: dict[str, str]


class _Ack(msgspec.Struct):
    """A JetStream publish ack; only its error matters here."""

    error: dict[str, Any] | None = None


_ack = msgspec.json.Decoder(_Ack)


class _Page:
    def __init__(self, reply: str, outstanding: int) -> None:
        self.reply = reply
        self.outstanding = outstanding
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(self, error: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(error)


class PagePublisher:
    """Publishes one page at a time on `nc` and returns once JetStream stored all of it."""

    def __init__(self, nc: Client, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._nc = nc
        self._timeout_s = timeout_s
        self._inbox: str | None = None
        self._pages = 0
        self._waiting: _Page | None = None

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        if self._waiting is not None:
            raise RuntimeError("one page at a time: the previous one is still waiting for acks")
        if self._inbox is None:
            inbox = self._nc.new_inbox()
            await self._nc.subscribe(f"{inbox}.*", cb=self._on_ack)
            self._inbox = inbox
        self._pages += 1
        page = self._waiting = _Page(f"{self._inbox}.{self._pages}", len(messages))
        try:
            for message in messages:
                await self._nc.publish(
                    message.subject, message.payload, reply=page.reply, headers=message.headers
                )
            try:
                await asyncio.wait_for(page.done, self._timeout_s)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
        finally:
            self._waiting = None
            if not page.done.done():
                page.done.cancel()

    async def _on_ack(self, msg: Msg) -> None:
        page = self._waiting
        if page is None or page.done.done() or msg.subject != page.reply:
            return  # an ack of a page that already failed
        if msg.headers and msg.headers.get(nats.js.api.Header.STATUS) == _NO_RESPONDERS:
            page.fail(nats.js.errors.NoStreamResponseError())
            return
        try:
            error = _ack.decode(msg.data).error
        except msgspec.DecodeError as exc:
            page.fail(exc)
            return
        if error is not None:
            try:
                nats.js.errors.APIError.from_error(error)  # raises the error's own type
            except nats.js.errors.APIError as exc:
                page.fail(exc)
            return
        page.outstanding -= 1
        if page.outstanding == 0:
            page.done.set_result(None)

"""The command worker: JetStream work queue in, result envelopes out.

A message is acked only after the events it caused are committed; a command
that cannot be decoded, or keeps failing, goes to `syncyard.dlq.<op>` with its
reason and is acked there, so nothing is dropped silently or retried forever.

An RPC is answered only on an upstream inbox (`_INBOX.…`): the reply subject
is the requester's to choose, and the worker publishes with its own rights,
so a request naming `syncyard.evt.…` or a JetStream API subject (say, purge the
event stream) would otherwise have syncyard publish there. Such a request is
not run; it is dead-lettered (reason `reply_not_inbox`), so an operator sees
who tries, and answered nowhere. nats-server backs this up: the worker's user
may publish on upstream inboxes only, not wherever a request points.

A command sent on its space's subject (`syncyard.space.<space>.cmd.<op>`, the
only one a tenant's login may publish on) runs only if its payload names that
space; otherwise it is dead-lettered (`space_mismatch`) and never runs. A
refusal is published on a space's results subject only when the subject named
that space, never on one the payload claims: a payload is the sender's to
write, and a tenant must not plant refusals among another's results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import propagate, trace

from events.codec import MAX_COMMAND_BYTES, CommandDecodeError, decode_command, encode
from events.commands import FLEET_OPS, Command, dead_letter_payload
from events.deadletter import DeadLetter
from events.errors import ErrorInfo, ErrorType
from events.results import CommandResult
from events.subjects import (
    COMMAND_STREAM,
    HEADER_COMMAND_ID,
    HEADER_MSG_ID,
    HEADER_SPACE_ID,
    RPC_PREFIX,
    command_address,
    command_subject,
    dlq_subject,
    op_from_subject,
    result_subject,
    space_header,
    space_result_subject,
)
from infra.nats_roles import UPSTREAM_INBOX, is_upstream_inbox
from services import tracing
from services.resilience.keyed_lock import KeyedLocks

log = logging.getLogger(__name__)
tracer = trace.get_tracer("syncyard.worker")

# The contract's bound on a space id (events.base.Identifier).
MAX_SPACE_ID = 128

CommandHandler = Callable[[Command, dict[str, str]], Awaitable[CommandResult]]


class _LooseId(msgspec.Struct):
    command_id: str | None = None


def _loose_id(msg: Msg) -> _LooseId:
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError, TypeError):
        return msgspec.json.decode(msg.data[:MAX_COMMAND_BYTES], type=_LooseId)
    return _LooseId()


def _guess_command_id(msg: Msg) -> str | None:
    """Best effort, for answering a command we could not decode."""
    found = _loose_id(msg).command_id
    if isinstance(found, str):
        return found[:128]
    return (msg.headers or {}).get(HEADER_MSG_ID)


def _space_mismatch(subject: str) -> CommandDecodeError:
    return CommandDecodeError(
        "space_mismatch",
        f"sent on {subject[:256]!r}, a subject for another space than the command's "
        "space_id: not run (send it on its own space's subject)",
    )


def _fleet_op_on_space_subject(subject: str, op: str) -> CommandDecodeError:
    return CommandDecodeError(
        "fleet_op",
        f"{op} acts for every space: not run when sent on a space's subject "
        f"({subject[:256]!r}); an operator sends it on {command_subject(op)!r}",
    )


class InProgress:
    """Tells JetStream that commands still running are being worked on: one timer for all.

    Every `period_s` (a third of the ack wait), each command running for at least
    that long gets an in-progress ack, so none is redelivered while it runs, and
    the longest a running command goes without one is two periods. (A timer task
    per command cost its creation and cancellation on every command.)
    """

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self._clock = clock
        self._since: dict[int, tuple[Msg, float]] = {}  # a Msg is not hashable

    def add(self, msg: Msg) -> None:
        self._since[id(msg)] = (msg, self._clock())

    def discard(self, msg: Msg) -> None:
        self._since.pop(id(msg), None)

    def __len__(self) -> int:
        return len(self._since)

    async def tick(self) -> None:
        now = self._clock()
        due = [msg for msg, since in self._since.values() if now - since >= self.period_s]
        for msg in due:
            with contextlib.suppress(Exception):  # NATS away: the redelivery is recognised
                await msg.in_progress()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            await self.tick()


class CommandWorker:
    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        handler: CommandHandler,
        *,
        consumer: str,
        concurrency: int = 256,
        max_deliver: int = 8,
        ack_wait_s: float = 30.0,
    ) -> None:
        self.nc = nc
        self.js = js
        self.handler = handler
        self.consumer = consumer
        self.concurrency = concurrency
        self.max_deliver = max_deliver
        self.ack_wait_s = ack_wait_s
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        # A connection's commands run in the order they were fetched: a sync
        # must not overtake the registration sent before it, nor another sync's cursor.
        self._ordered = KeyedLocks()
        # Long provider calls must not let JetStream think the worker died.
        self._working = InProgress(ack_wait_s / 3)

    # -- loops ----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Pull commands until `stop` is set, then finish what is in flight."""
        sub = await self.js.pull_subscribe_bind(self.consumer, COMMAND_STREAM)
        keepalive = asyncio.create_task(self._working.run(), name="in-progress")
        rpc = await self.nc.subscribe(f"{RPC_PREFIX}.>", queue="syncyard-rpc", cb=self._on_rpc)
        try:
            while not stop.is_set():
                await self._slots.acquire()
                self._slots.release()
                free = max(1, min(256, self._free_slots()))
                try:
                    msgs = await sub.fetch(free, timeout=0.5)
                except TimeoutError:  # nats-py raises both its own and asyncio's
                    continue
                for msg in msgs:
                    await self._slots.acquire()
                    self._spawn(self._guarded(self._process_queued, msg))
        finally:
            with contextlib.suppress(Exception):
                await rpc.unsubscribe()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            keepalive.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _free_slots(self) -> int:
        return self.concurrency - len(self._tasks)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._slots.release())

    async def _on_rpc(self, msg: Msg) -> None:
        await self._slots.acquire()
        self._spawn(self._guarded(self._process_rpc, msg))

    async def _guarded(self, process: Callable[[Msg], Awaitable[None]], msg: Msg) -> None:
        # Publishing a result or acking can fail while NATS reconnects; the
        # command is then redelivered and recognised, so log and move on.
        try:
            await process(msg)
        except Exception:
            log.warning("lost contact while finishing %s", msg.subject, exc_info=True)

    # -- one command ----------------------------------------------------------
    async def _process_queued(self, msg: Msg) -> None:
        # The subject's space, when it names one, is the only space a refusal is told to.
        op, scoped, subject_space = command_address(msg.subject)
        deliveries = msg.metadata.num_delivered or 1
        with self._span(op, msg) as trace_ctx:
            try:
                cmd = decode_command(op, msg.data)
                if scoped and cmd.space_id != subject_space:
                    raise _space_mismatch(msg.subject)
                if scoped and op in FLEET_OPS:
                    raise _fleet_op_on_space_subject(msg.subject, op)
            except CommandDecodeError as exc:
                await self._dead_letter(msg, op, exc.code, exc.reason, deliveries)
                await self._publish_result(
                    op, self._refusal(msg, op, exc.code, exc.reason), subject_space
                )
                await msg.ack()
                return
            self._working.add(msg)
            try:
                async with self._ordered.hold((cmd.space_id, cmd.account_id)):
                    result = await self.handler(cmd, trace_ctx)
            except Exception as exc:
                log.warning(
                    "command failed",
                    extra={"command_id": cmd.command_id, "op": op, "deliveries": deliveries},
                    exc_info=True,
                )
                if deliveries >= self.max_deliver:
                    reason = f"gave up after {deliveries} deliveries: {type(exc).__name__}: {exc}"
                    await self._dead_letter(msg, op, "delivery_exhausted", reason, deliveries)
                    await self._publish_result(
                        op,
                        self._refusal(msg, op, "delivery_exhausted", reason, kind="unknown"),
                        cmd.space_id,
                    )
                    await msg.ack()
                else:
                    # Let JetStream redeliver later, to this or another replica.
                    await msg.nak(delay=min(0.2 * 2**deliveries, 10.0))
                return
            finally:
                self._working.discard(msg)
            await self._publish_result(op, result, cmd.space_id)
            await msg.ack()

    async def _process_rpc(self, msg: Msg) -> None:
        op = op_from_subject(msg.subject, RPC_PREFIX)
        if msg.reply and not is_upstream_inbox(msg.reply):
            reason = (
                f"reply subject {msg.reply[:128]!r} is not an inbox ({UPSTREAM_INBOX}.…): "
                "the command was not run and nothing was answered"
            )
            log.warning("rpc refused: %s", reason, extra={"op": op})
            await self._dead_letter(msg, op, "reply_not_inbox", reason, 1)
            return
        with self._span(op, msg) as trace_ctx:
            try:
                cmd = decode_command(op, msg.data)
            except CommandDecodeError as exc:
                await self._dead_letter(msg, op, exc.code, exc.reason, 1)
                result = self._refusal(msg, op, exc.code, exc.reason)
            else:
                try:
                    async with self._ordered.hold((cmd.space_id, cmd.account_id)):
                        result = await self.handler(cmd, trace_ctx)
                except Exception as exc:
                    log.warning("rpc command failed", extra={"op": op}, exc_info=True)
                    # Nothing was recorded; the caller may safely send the same command again.
                    result = self._refusal(
                        msg,
                        op,
                        "internal_error",
                        f"{type(exc).__name__}: {exc}",
                        kind="unknown",
                        retryable=True,
                    )
            if msg.reply:
                await self.nc.publish(msg.reply, encode(result))

    @contextlib.contextmanager
    def _span(self, op: str, msg: Msg) -> Iterator[dict[str, str]]:
        if not tracing.traced(msg.headers):
            yield {}  # no span anybody could see, no context to pass on (services/tracing.py)
            return
        parent = propagate.extract(dict(msg.headers or {}))
        with tracer.start_as_current_span(
            f"command {op}", context=parent, kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.destination.name", msg.subject)
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield carrier

    def _refusal(
        self,
        msg: Msg,
        op: str,
        code: str,
        reason: str,
        *,
        kind: ErrorType = "validation",
        retryable: bool = False,
    ) -> CommandResult:
        return CommandResult(
            command_id=_guess_command_id(msg) or "",
            op=op,
            success=False,
            error=ErrorInfo(code=code, message=reason, type=kind, retryable=retryable),
        )

    async def _dead_letter(
        self, msg: Msg, op: str, code: str, reason: str, deliveries: int
    ) -> None:
        letter = DeadLetter(
            reason_code=code,
            reason=reason,
            original_subject=msg.subject,
            command_id=_guess_command_id(msg),
            received_at=datetime.now(UTC),
            deliveries=deliveries,
            # Kept for a person to read, for days: only the command's known,
            # non-secret fields (an allow-list), never a token however it is spelt.
            payload=dead_letter_payload(msg.data, max_bytes=MAX_COMMAND_BYTES),
        )
        # Awaited: the command is acked only once its dead letter is stored.
        await self.js.publish(dlq_subject(op or "unknown"), encode(letter))

    async def _publish_result(self, op: str, result: CommandResult, space_id: str | None) -> None:
        # The space too: command ids are unique only within one, so a reader
        # waiting for its `sync-1` must not take another space's.
        headers = {HEADER_COMMAND_ID: result.command_id} if result.command_id else {}
        if space_id:
            headers[HEADER_SPACE_ID] = space_header(space_id)
        data = encode(result)
        await self.nc.publish(result_subject(op or "unknown"), data, headers=headers or None)
        if space_id and len(space_id) <= MAX_SPACE_ID:
            # Again on the space's own subject, which a tenant's login may be limited
            # to (nats_roles.upstream_tenant); the subject above stays, for every
            # upstream reading it today. A refused command's subject may name a
            # space of any length: beyond the contract's, it gets no copy (no
            # tenant's login can name one, and a subject is bounded).
            await self.nc.publish(
                space_result_subject(space_id, op or "unknown"), data, headers=headers
            )

"""Deferred syncs on the one scheduler: set by the sync handler, fired back into the work queue.

A deferral is a timer of kind `deferral`, one per round
(`<space>/<command_id>:try<n>`, then `:wait<w>` once it has waited out w
refusals, which spend no try; command ids are unique only within a space, and
two spaces' `sync-1` must not share, or overwrite, one timer), holding the
command as received. When it is due, the scheduler publishes the command again
to its JetStream subject with the message id `<space>/<command_id>:try<n+1>`
(and the same `:wait<w>`). NATS keeps a firing repeated after a crash (the
command queue drops no message id, so no tenant can take a round's id first:
infra/streams.py): the connection aggregate recognises a round it already made.
Timers set before the scoping keep their key, and fire with it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from nats.js import JetStreamContext

from events.commands import Command
from events.subjects import HEADER_MSG_ID, command_msg_id, command_subject
from infra.scheduler import Scheduler, Timer
from services.ports import DeferralPort

KIND = "deferral"


class DeferredCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A timer's payload: what to send again, and how many tries it has had."""

    op: str
    tries: int
    command: msgspec.Raw
    waits: int = 0


def _round(tries: int, waits: int) -> str:
    """A round's name: its try, and the refusals waited out since (none: the old form)."""
    return f"try{tries}" + (f":wait{waits}" if waits else "")


class ScheduledDeferrals(DeferralPort):
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def defer(
        self, command: Command, *, tries: int, resume_at: datetime, waits: int = 0
    ) -> None:
        payload = DeferredCommand(
            op=command.op,
            tries=tries,
            waits=waits,
            command=msgspec.Raw(msgspec.json.encode(command)),
        )
        await self.scheduler.schedule(
            KIND,
            f"{command_msg_id(command.space_id, command.command_id)}:{_round(tries, waits)}",
            resume_at,
            msgspec.json.encode(payload),
        )

    def fire_with(self, js: JetStreamContext) -> None:
        """Fire this process's share of due deferrals by publishing them on `js`."""

        async def fire(timer: Timer) -> datetime | None:
            due = msgspec.json.decode(timer.payload, type=DeferredCommand)
            msg_id, _, _ = timer.key.rpartition(":try")
            await js.publish(
                command_subject(due.op),
                bytes(due.command),
                headers={HEADER_MSG_ID: f"{msg_id}:{_round(due.tries + 1, due.waits)}"},
            )
            return None

        self.scheduler.handle(KIND, fire)

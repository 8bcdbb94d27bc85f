"""`syncyard audit <subject> ...`: an aggregate's timeline and its state as of a time.

Each subject is a function `(conn, reader, args) -> exit code` that the CLI's
`audit` group points at with `set_defaults(audit=...)`; `run_audit` opens the
store for it.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from infra.audit import Audit, UnknownAggregateError, breaker_as_of, connection_as_of, describe
from infra.config import Settings
from infra.log_access import open_log
from services.connections.state import ConnectionState
from services.ports import DbConnection, LogReader

AuditSubject = Callable[[DbConnection, LogReader, argparse.Namespace], Awaitable[int]]


async def run_audit(settings: Settings, subject: AuditSubject, args: argparse.Namespace) -> int:
    async with open_log(settings) as (pool, reader), pool.acquire() as conn:
        try:
            return await subject(conn, reader, args)
        except UnknownAggregateError as exc:
            print(f"syncyard audit: {exc}")
            return 1


async def audit_connection(conn: DbConnection, reader: LogReader, args: argparse.Namespace) -> int:
    try:
        audit = await connection_as_of(conn, reader, args.id, args.as_of)
    except ValueError as exc:
        print(f"syncyard audit: {exc}")
        return 2
    print_timeline(f"connection {audit.aggregate_id}", audit)
    if audit.state is None:
        print(f"state as of {_iso(audit.at)}: none, the connection was registered later")
    else:
        print_state(audit.at, _connection_summary(audit.state))
    return 0


async def audit_breaker(conn: DbConnection, reader: LogReader, args: argparse.Namespace) -> int:
    audit = await breaker_as_of(conn, reader, args.provider, args.region, args.as_of)
    print_timeline(f"breaker {args.provider}/{args.region} ({audit.aggregate_id})", audit)
    print_state(audit.at, msgspec.to_builtins(audit.state))
    return 0


def print_timeline(title: str, audit: Audit[Any]) -> None:
    until = f" up to {_iso(audit.at)}" if audit.at is not None else ""
    print(f"{title}: {len(audit.events)} events{until}")
    for note in audit.events:
        # A ranking is the decision's "why": shown whole, never cut.
        fields = " ".join(
            f"{k}={v if k == 'ranking' else _short(v)}" for k, v in describe(note.event).items()
        )
        print(
            f"  {_iso(note.event.timestamp)}  #{note.id:<8} v{note.originator_version:<4} "
            f"{type(note.event).__name__:<22} {fields}"
        )
    if audit.later:
        print(f"  ({audit.later} later events not folded)")


def print_state(at: datetime | None, state: Any) -> None:
    print(f"state {'as of ' + _iso(at) if at is not None else 'now'}:")
    print(msgspec.json.format(msgspec.json.encode(state), indent=2).decode())


def _connection_summary(state: ConnectionState) -> dict[str, Any]:
    summary: dict[str, Any] = msgspec.to_builtins(state)
    # Hundreds of remembered results say little in an audit; their count does.
    summary["recent_results"] = len(state.recent_results)
    return summary


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="milliseconds") if moment is not None else "-"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."

"""Where manual entries live: the `ManualEntrySource` port and an in-memory implementation.

A person's manual ledger is an append-only log of changes (an entry added,
edited or deleted), numbered from 1, so a cursor is simply the number of
the last change delivered. The in-memory source serves tests and the demo;
a store backed by PostgreSQL (or an event-sourced aggregate) implements the
same protocol later.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec


class ManualAccount(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    name: str
    type: str = "other"
    subtype: str | None = None
    current: float = 0.0
    available: float | None = None
    iso_currency_code: str = "USD"


class ManualEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One entry as the person typed it; `amount` positive is money out."""

    entry_id: str
    account_id: str
    amount: float
    date: str
    name: str
    pending: bool = False
    iso_currency_code: str = "USD"


class ManualChange(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    kind: Literal["added", "modified", "removed"]
    entry: ManualEntry


class UnknownLedgerError(LookupError):
    """No manual ledger by that id (never opened, or removed)."""


class ManualEntrySource(Protocol):
    """The manual adapter's only dependency: one change log per ledger (a link's item id)."""

    async def open(self, ledger_id: str, owner_ref: str) -> None:
        """Create an empty ledger; opening an existing one is a no-op."""

    async def exists(self, ledger_id: str) -> bool: ...

    async def close(self, ledger_id: str) -> None:
        """Delete a ledger and its entries; idempotent."""

    async def accounts(self, ledger_id: str) -> list[ManualAccount]:
        """Raises UnknownLedgerError for a ledger that does not exist."""

    async def changes(
        self, ledger_id: str, after: int, limit: int
    ) -> tuple[list[ManualChange], int]:
        """Up to `limit` changes after position `after`, and the log's head position.

        Raises UnknownLedgerError for a ledger that does not exist.
        """


class _Ledger:
    def __init__(self, owner_ref: str) -> None:
        self.owner_ref = owner_ref
        self.accounts: dict[str, ManualAccount] = {}
        self.entries: dict[str, ManualEntry] = {}
        self.log: list[ManualChange] = []


class InMemoryManualEntries:
    """A `ManualEntrySource` in a dict, plus the writes a person's app would make."""

    def __init__(self) -> None:
        self._ledgers: dict[str, _Ledger] = {}

    async def open(self, ledger_id: str, owner_ref: str) -> None:
        self._ledgers.setdefault(ledger_id, _Ledger(owner_ref))

    async def exists(self, ledger_id: str) -> bool:
        return ledger_id in self._ledgers

    async def close(self, ledger_id: str) -> None:
        self._ledgers.pop(ledger_id, None)

    async def accounts(self, ledger_id: str) -> list[ManualAccount]:
        return list(self._ledger(ledger_id).accounts.values())

    async def changes(
        self, ledger_id: str, after: int, limit: int
    ) -> tuple[list[ManualChange], int]:
        log = self._ledger(ledger_id).log
        return log[after : after + limit], len(log)

    def put_account(self, ledger_id: str, account: ManualAccount) -> None:
        self._ledger(ledger_id).accounts[account.account_id] = account

    def put_entry(self, ledger_id: str, entry: ManualEntry) -> None:
        """Add an entry, or record an edit if one with its id exists."""
        ledger = self._ledger(ledger_id)
        kind: Literal["added", "modified"] = (
            "modified" if entry.entry_id in ledger.entries else "added"
        )
        ledger.entries[entry.entry_id] = entry
        ledger.log.append(ManualChange(position=len(ledger.log) + 1, kind=kind, entry=entry))

    def delete_entry(self, ledger_id: str, entry_id: str) -> None:
        ledger = self._ledger(ledger_id)
        entry = ledger.entries.pop(entry_id, None)
        if entry is not None:
            ledger.log.append(
                ManualChange(position=len(ledger.log) + 1, kind="removed", entry=entry)
            )

    def _ledger(self, ledger_id: str) -> _Ledger:
        ledger = self._ledgers.get(ledger_id)
        if ledger is None:
            raise UnknownLedgerError(ledger_id)
        return ledger

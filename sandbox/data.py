"""Deterministic fake banking data: the same seed and link always give the same item.

Items are neutral (signed amounts in Plaid's convention: money out is
positive); each provider module dresses them in its own wire shape.
"""

from __future__ import annotations

import functools
import random
from datetime import date, timedelta
from typing import Literal

import msgspec

# A fixed "today", so data does not drift with the wall clock between runs.
ANCHOR_DATE = date(2025, 1, 31)

_MERCHANTS = (
    "Blue Bottle Coffee",
    "Whole Foods Market",
    "Uber",
    "Shell",
    "Netflix",
    "Amazon",
    "Delta Air Lines",
    "Trader Joe's",
    "Con Edison",
    "Spotify",
)
_ACCOUNT_KINDS = (
    ("CHECKING", "Everyday Checking"),
    ("SAVINGS", "High Yield Savings"),
    ("CREDIT_CARD", "Rewards Visa"),
)


class FakeAccount(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    name: str
    number: str
    current: float
    available: float | None


class FakeTransaction(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account_id: str
    amount: float
    date: str
    name: str
    pending: bool


class Change(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["added", "modified", "removed"]
    transaction: FakeTransaction


class FakeItem(msgspec.Struct, frozen=True, kw_only=True):
    """One link's data: its accounts, and its history as an ordered change log."""

    item_id: str
    accounts: tuple[FakeAccount, ...]
    changes: tuple[Change, ...]

    def current_transactions(self) -> list[FakeTransaction]:
        """The log replayed: what a provider without a change feed would list."""
        by_id: dict[str, FakeTransaction] = {}
        for change in self.changes:
            if change.kind == "removed":
                by_id.pop(change.transaction.id, None)
            else:
                by_id[change.transaction.id] = change.transaction
        return sorted(by_id.values(), key=lambda t: (t.date, t.id))


def _token(rng: random.Random, prefix: str, length: int = 24) -> str:
    return prefix + "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(length))


# Sized above the number of items a benchmark cycles through: an LRU smaller than
# the working set misses on every call and regenerates the item.
@functools.lru_cache(maxsize=16384)
def fake_item(seed: int, provider: str, link_key: str, *, guids: bool = False) -> FakeItem:
    """The item behind `link_key` (a Plaid access token, an MX user+member).

    `guids` gives ids MX-style prefixes (ACT-, TRN-); Plaid's ids are bare.
    """
    rng = random.Random(f"{seed}:{provider}:{link_key}")
    account_prefix, transaction_prefix = ("ACT-", "TRN-") if guids else ("", "")
    accounts = tuple(
        FakeAccount(
            id=_token(rng, account_prefix),
            kind=kind,
            name=name,
            number=f"{rng.randrange(10**9, 10**10)}",
            current=round(
                rng.uniform(0, 2500) if kind == "CREDIT_CARD" else rng.uniform(50, 9000), 2
            ),
            available=None if kind == "CREDIT_CARD" else round(rng.uniform(0, 8000), 2),
        )
        for kind, name in _ACCOUNT_KINDS[: rng.randint(2, 3)]
    )
    added: list[FakeTransaction] = []
    for _ in range(rng.randint(25, 60)):
        account = rng.choice(accounts)
        payroll = account.kind == "CHECKING" and rng.random() < 0.08
        added.append(
            FakeTransaction(
                id=_token(rng, transaction_prefix, 32),
                account_id=account.id,
                amount=-2500.0 if payroll else round(rng.uniform(2.5, 250.0), 2),
                date=(ANCHOR_DATE - timedelta(days=rng.randrange(0, 90))).isoformat(),
                name="ACME Corp Payroll" if payroll else rng.choice(_MERCHANTS),
                pending=rng.random() < 0.1,
            )
        )
    added.sort(key=lambda t: (t.date, t.id))
    changes = [Change(kind="added", transaction=t) for t in added]
    # Later in the log, pending charges settle (often for a different amount)
    # and a couple of transactions are withdrawn: the modified and removed lists.
    for t in (t for t in added if t.pending):
        settled = msgspec.structs.replace(t, pending=False, amount=round(t.amount * 1.18, 2))
        changes.append(Change(kind="modified", transaction=settled))
    for t in rng.sample([t for t in added if not t.pending], k=2):
        changes.append(Change(kind="removed", transaction=t))
    return FakeItem(item_id=_token(rng, ""), accounts=accounts, changes=tuple(changes))

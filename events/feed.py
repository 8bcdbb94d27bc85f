"""The account's transaction feed: every change to its ledger, in syncyard ids, by position.

A provider's ids and cursors are that provider's business; upstream sees one
feed per account whatever provider reported a transaction. Each entry says
what changed (`added`, `modified`, `removed`), which syncyard transaction it
is, and its provenance: the provider and the provider's id that reported it,
and why it was recognised as that transaction (`match`). Positions only grow,
one per entry, per account, so a consumer that keeps the last position it
folded never misses an entry and never folds one twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from events.base import DomainEvent, Identifier, Message

FeedChange = Literal["added", "modified", "removed"]
# Why an entry is the syncyard transaction it names:
#   new             no transaction known matched: a new syncyard id
#   same_id         the provider reported this id before
#   pending_posted  the provider's posted transaction names its pending one
#   cross_provider  another provider reported the same purchase (amount, dates, description)
MatchReason = Literal["new", "same_id", "pending_posted", "cross_provider"]


class FeedTransaction(Message, frozen=True, kw_only=True):
    """A bank transaction as upstream receives it; `amount` is positive for money out."""

    provider_account_id: str
    amount: str  # a decimal string: never a float for money
    iso_currency_code: str | None = None
    date: dt.date
    authorized_date: dt.date | None = None
    name: str
    merchant_name: str | None = None
    pending: bool = False


class FeedEntry(Message, frozen=True, kw_only=True):
    position: int
    change: FeedChange
    syncyard_transaction_id: str
    provider: str
    provider_transaction_id: str
    transaction: FeedTransaction | None = None  # None when removed
    match: MatchReason = "new"
    # How many known transactions were candidates for this one: more than one
    # means the match was ambiguous and the documented rule chose.
    candidates: int = 0


class Recognition(Message, frozen=True, kw_only=True):
    """A provider transaction recognised as one the feed already delivered: no entry.

    Recorded so an auditor can see which transaction it was taken for, and
    among how many candidates.
    """

    provider_transaction_id: str
    syncyard_transaction_id: str
    match: MatchReason
    candidates: int = 0
    transaction: FeedTransaction  # as this provider reported it
    delivered_at: int = 0  # the feed position that first delivered the transaction


class FeedAppended(DomainEvent, frozen=True, kw_only=True):
    """One walk of a link's pages reconciled into the account's feed.

    `cursor` is the link's provider cursor after it: syncyard keeps it, so
    every advance of a link's cursor is this event. A walk that would change
    nothing (no entry, no copy recognised, the same cursor and held ids)
    records none: its `SyncCompleted` alone says it ran.
    """

    command_id: str
    provider: str
    cursor: str
    has_more: bool
    entries: tuple[FeedEntry, ...] = ()
    recognised: tuple[Recognition, ...] = ()
    # The provider's removals of pending ids in a walk that ended before its
    # update did: the posting that replaces one may come on a later page, so the
    # link's next walk plans them again (services/reconciliation/feed.py).
    held: tuple[str, ...] = ()


class FeedPage(Message, frozen=True, kw_only=True):
    """What `feed.read` and a sync's result carry: entries and the position to go on from."""

    account_id: Identifier
    entries: tuple[FeedEntry, ...]
    position: int  # the last position in `entries`, or `since` when there were none
    has_more: bool = False

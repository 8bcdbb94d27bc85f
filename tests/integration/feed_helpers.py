"""What the feed tests share: the bank's ground truth, the feed read back, and the check
that the feed, folded as a consumer folds it, is the bank."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import aiohttp
from nats.aio.client import Client as NatsClient

from events.codec import decode_result, encode
from events.commands import ReadFeed
from events.feed import FeedAppended
from events.results import CommandResult
from events.subjects import rpc_subject
from services.connections.state import connection_id_for
from services.ports import EventStorePort
from tests.support.harness import AUTH, SPACE, Client, sync

Truth = dict[str, Any]
Entry = dict[str, Any]
Feed = dict[str, Entry]
Provenance = dict[tuple[str, str], str]


async def bank_truth(
    http: aiohttp.ClientSession, sandbox: str, person: str, *, institution: str | None = None
) -> Truth:
    """The person's usual bank, or their bank at `institution` (a name or a provider's id)."""
    params = {"institution": institution} if institution else {}
    async with http.get(f"{sandbox}/_admin/truth/{person}", params=params) as response:
        assert response.status == 200, await response.text()
        body: Truth = await response.json()
        return body


async def bank_advances(
    http: aiohttp.ClientSession,
    sandbox: str,
    person: str,
    *,
    days: float | None = None,
    transactions: int | None = None,
    institution: str | None = None,
) -> None:
    body: dict[str, Any] = {"days": days} if days is not None else {"transactions": transactions}
    if institution:
        body["institution"] = institution
    async with http.post(f"{sandbox}/_admin/truth/{person}/advance", json=body) as response:
        assert response.status == 200, await response.text()


def fold(entries: Sequence[Entry]) -> Feed:
    """The feed as a consumer folds it: upsert added and modified, drop removed."""
    folded: Feed = {}
    for entry in entries:
        if entry["change"] == "removed":
            folded.pop(entry["syncyard_transaction_id"], None)
        else:
            folded[entry["syncyard_transaction_id"]] = entry
    return folded


async def provenance(store: EventStorePort, account: str) -> Provenance:
    """Every provider transaction the feed knows, delivered or recognised, and which it is."""
    known: Provenance = {}
    for event in await store.events_after(connection_id_for(SPACE, account), 0):
        if isinstance(event, FeedAppended):
            for entry in event.entries:
                known[(entry.provider, entry.provider_transaction_id)] = (
                    entry.syncyard_transaction_id
                )
            for seen in event.recognised:
                known[(event.provider, seen.provider_transaction_id)] = seen.syncyard_transaction_id
    return known


async def read_over_rpc(nc: NatsClient, account: str, *, since: int = 0) -> list[Entry]:
    """`feed.read` from `since`, page after page until the feed ends."""
    entries: list[Entry] = []
    for page in range(1_000):
        reply = await nc.request(
            rpc_subject("feed.read"),
            encode(
                ReadFeed(
                    command_id=f"read-{account}-{since}-{page}",
                    space_id=SPACE,
                    account_id=account,
                    since=since,
                    limit=1000,
                )
            ),
            timeout=15,
        )
        result = decode_result(reply.data)
        assert result.success and result.data is not None, result.error
        entries += result.data["entries"]
        since = result.data["position"]
        if not result.data["has_more"]:
            return entries
    raise AssertionError("feed.read never said the feed ended")


async def read_over_http(http: aiohttp.ClientSession, api: str, account: str) -> list[Entry]:
    url = f"{api}/v1/accounts/{account}/transactions/changes"
    params = {"space_id": SPACE, "since": "0", "limit": "1000"}
    async with http.get(url, params=params, headers=AUTH) as response:
        assert response.status == 200, await response.text()
        page = await response.json()
    assert not page["has_more"], "more than 1000 entries: page on"
    entries: list[Entry] = page["entries"]
    return entries


def assert_positions_are_contiguous(entries: Sequence[Entry]) -> None:
    positions = [e["position"] for e in entries]
    assert positions == list(range(1, len(entries) + 1)), f"positions {positions}"


def assert_each_transaction_lives_once(entries: Sequence[Entry]) -> None:
    """A syncyard transaction is added once, then modified, then perhaps removed for good."""
    state: dict[str, str] = {}
    for entry in entries:
        sid, change = entry["syncyard_transaction_id"], entry["change"]
        before = state.get(sid)
        if change == "added":
            assert before is None, f"{sid} added again at position {entry['position']}"
        else:
            assert before == "live", f"{sid} {change} at {entry['position']} while {before}"
        state[sid] = "removed" if change == "removed" else "live"


def provider_ids(t: dict[str, Any]) -> list[tuple[str, str]]:
    """A bank transaction's ids at every provider that views the bank (at Plaid, the
    pending one and the posted one)."""
    return [
        (provider, ids[key])
        for provider, ids in t["providers"].items()
        for key in ("pending_transaction_id", "transaction_id")
        if ids.get(key)
    ]


def assert_feed_is_the_bank(
    entries: Sequence[Entry], known: Provenance, bank: Truth, *, told_by: str | None = None
) -> None:
    """Positions 1..N, and every live bank transaction once, with the bank's amount and
    pending state; nothing else (a withdrawn one removed, a posted one its pending one).

    `told_by`: the feed is only as current as that provider's changes, all walked,
    make it: a withdrawn transaction it never reported may still be in the feed
    (a backup's first sync lists what is live, and cannot say what went away).
    """
    assert_positions_are_contiguous(entries)
    assert_each_transaction_lives_once(entries)
    folded = fold(entries)
    owners: dict[str, str] = {}  # syncyard id → bank id
    problems: list[str] = []
    for t in bank["transactions"]:
        ids = provider_ids(t)
        syncyard_ids = {known[i] for i in ids if i in known}
        if t["withdrawn"]:
            still = syncyard_ids & folded.keys()
            unreported = told_by is not None and not any(i in known for i in ids if i[0] == told_by)
            if still and not unreported:
                problems.append(f"withdrawn {t['id']} is still in the feed as {still}")
            owners.update(dict.fromkeys(still, t["id"]))
            continue
        if len(syncyard_ids) != 1:
            problems.append(
                f"bank transaction {t['id']} is {syncyard_ids or 'nothing'} in the feed"
            )
            continue
        (syncyard_id,) = syncyard_ids
        if syncyard_id in owners:
            problems.append(f"{syncyard_id} is both {owners[syncyard_id]} and {t['id']}")
            continue
        owners[syncyard_id] = t["id"]
        if syncyard_id not in folded:
            problems.append(f"live {t['id']} ({syncyard_id}) was removed from the feed")
            continue
        got = folded[syncyard_id]["transaction"]
        if Decimal(got["amount"]) != Decimal(str(t["amount"])) or got["pending"] != t["pending"]:
            problems.append(
                f"{t['id']} is {got['amount']} pending={got['pending']} in the feed, "
                f"{t['amount']} pending={t['pending']} at the bank"
            )
    extra = set(folded) - set(owners)
    if extra:
        problems.append(f"the feed holds transactions the bank does not: {sorted(extra)}")
    assert not problems, "the feed is not the bank:\n  " + "\n  ".join(
        problems + _story(problems, entries, known, bank)
    )


def _story(
    problems: list[str], entries: Sequence[Entry], known: Provenance, bank: Truth
) -> list[str]:
    """What the feed and the bank say about the transactions a problem names."""
    told = " ".join(problems)
    lines = []
    for t in bank["transactions"]:
        ids = provider_ids(t)
        mine = {known[i] for i in ids if i in known}
        if t["id"] not in told and not any(s in told for s in mine):
            continue
        lines.append(
            f"bank {t['id']}: {t['amount']} {t['description']!r} authorised "
            f"{t['authorized_date']} posted {t['posted_date']} pending={t['pending']} "
            f"withdrawn={t['withdrawn']}; "
            + ", ".join(f"{p}:{i}→{known.get((p, i), '-')}" for p, i in ids)
        )
        for e in entries:
            if e["syncyard_transaction_id"] in mine:
                txn = e["transaction"] or {}
                lines.append(
                    f"    #{e['position']} {e['change']} {e['match']} ({e['candidates']}) "
                    f"{e['provider']}:{e['provider_transaction_id']} {e['syncyard_transaction_id']}"
                    f" {txn.get('amount')} {txn.get('date')}/{txn.get('authorized_date')} "
                    f"pending={txn.get('pending')} {txn.get('merchant_name') or txn.get('name')!r}"
                )
    return lines


async def sync_to_the_end(upstream: Client, account: str, prefix: str) -> list[CommandResult]:
    """`sync.transactions` until the feed says it has no more; every result a success."""
    results: list[CommandResult] = []
    for n in range(30):
        result = await upstream.send(sync(account, f"{prefix}-{n}"))
        assert result.success, result.error
        assert result.data is not None
        results.append(result)
        if not result.data["has_more"]:
            return results
    raise AssertionError("the sync never said it had no more")

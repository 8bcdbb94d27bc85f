"""The feed (issue #10): what reconciling each page costs a sync, and `feed.read` of 1,000 entries.

The code before the feed cannot run beside this one (same modules, same
tables), so the feed's cost is measured against what this run does without
it, on the same servers, round robin:

(s) Accounts linked at Plaid in the sandbox (its own process, no scenario),
each synced again and again: first its bank's 60-day history (in groups, one
group a round), then rounds alternating the bank's new activity (a day of it,
`POST /_admin/truth/<person>/advance`) and nothing new. Every round runs
four configurations over the same accounts, in a rotating order, each
calling the round's first accounts one at a time (command → result without
queueing) and the rest IN_FLIGHT at a time (calls per second):

- `sync.transactions` through syncyard: JetStream → worker → the provider's
  pages → reconciled into the feed (index read, plan, `FeedAppended`, index
  written) → committed → result;
- `accounts.get` through syncyard: the same command path and handler
  (orchestrator, breakers, the attempt recorded), one provider call, no feed
  (for a twin of each account, registered alike, so the syncs' connections
  hold only what syncs record);
- the bare provider walk: `PlaidAdapter.sync_transactions` from each
  account's own cursor, page after page as the orchestrator walks them;
- the bare `PlaidAdapter.get_accounts`.

syncyard runs as two processes, as deployed: `serve --components worker` and
`serve --components relay,projector,api`. Each syncyard phase ends when the
followers have caught up with the log; both processes' CPU time is read with
psutil before and after.

(r) One account whose feed holds at least 1,000 entries (built with syncs),
read from position 0 with limit 1000: `feed.read` over RPC (the worker
process answers it) and `GET /v1/accounts/{id}/transactions/changes` (the
API process), beside a bare asyncpg SELECT of the same rows and core NATS
request/reply round trips (an empty reply, and one as long as feed.read's).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import psutil  # type: ignore[import-untyped]
from nats.aio.msg import Msg

from bench.cli import run
from bench.report import Row, machine, pct, render
from bench.servers import CIPHER_KEY, fresh_database, sandbox, servers
from bench.timing import interleaved
from events.codec import decode_result, encode
from events.commands import GetAccounts, ReadFeed
from events.results import CommandResult
from events.subjects import rpc_subject
from infra.embedded import find_free_port
from services.connections.state import connection_id_for
from services.orchestrator import MAX_PAGES_PER_SYNC
from services.providers.plaid.adapter import PlaidAdapter
from tests.support import bus
from tests.support.harness import (
    API_TOKENS_ENV,
    AUTH,
    Client,
    Component,
    client,
    register,
    sync,
)
from tests.support.links import link_for
from tests.support.sandbox_admin import SandboxAdmin

SPACE = "bench"
IN_FLIGHT = 8  # calls in flight while throughput is measured, whatever the configuration
PAGE = 100  # the page size asked of the provider: SyncTransactions' default
READ_LIMIT = 1000
TIMEOUT_S = 60.0

SYNC, ACCOUNTS, WALK, BARE_ACCOUNTS = (
    "sync.transactions",
    "accounts.get",
    "bare provider walk",
    "bare /accounts/get",
)
CONFIGS = (SYNC, ACCOUNTS, WALK, BARE_ACCOUNTS)
THROUGH_SYNCYARD = frozenset({SYNC, ACCOUNTS})
HISTORY, NEW, NOTHING = "history (first sync)", "new activity (a day)", "nothing new"


@dataclass(frozen=True)
class Scale:
    group: int  # accounts whose first sync makes one history round
    groups: int  # history rounds
    rounds: int  # later rounds of each kind (new activity, nothing new)
    serial: int  # accounts of each round called one at a time, for latency
    reads: int  # timed calls per configuration in (r)


QUICK = Scale(group=80, groups=5, rounds=4, serial=32, reads=100)
FULL = Scale(group=200, groups=5, rounds=8, serial=64, reads=400)


@dataclass
class Phase:
    """One configuration over one round's accounts: some one at a time, the rest concurrently."""

    rate: float  # calls/s, IN_FLIGHT at a time
    latencies: list[float]  # seconds, call → answer, one at a time
    calls: int
    changes: int  # feed entries (sync) or provider changes (walk) delivered
    worker_cpu: float = 0.0  # seconds per call, the worker process
    followers_cpu: float = 0.0  # seconds per call, the relay/projector/api process


@dataclass
class Results:
    phases: dict[str, dict[str, list[Phase]]] = field(
        default_factory=lambda: {k: {c: [] for c in CONFIGS} for k in (HISTORY, NEW, NOTHING)}
    )
    reads: dict[str, list[float]] = field(default_factory=dict)
    read_bytes: int = 0
    feed_entries: int = 0


def twin(account: str) -> str:
    """The connection `accounts.get` is sent for in place of `account`'s: a connection of
    its own, so that the syncs' connections hold only what syncs record (a sync's feed
    index catches up with every event of its connection it has not seen)."""
    return f"{account}-acc"


def _cpu(proc: Any) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _ok(result: CommandResult) -> dict[str, Any]:
    if not result.success or result.data is None:
        raise SystemExit(f"{result.op} {result.command_id} failed: {result.error}")
    return result.data


async def closed_loop(
    accounts: Sequence[str], call: Callable[[str], Awaitable[int]], in_flight: int
) -> Phase:
    """Every account once, `in_flight` calls at a time; calls/s and each call's latency."""
    todo = iter(accounts)
    latencies: list[float] = []
    changes = 0

    async def slot() -> None:
        nonlocal changes
        for account in todo:
            started = time.perf_counter()
            delivered = await call(account)  # not `changes += await`: it reads `changes` first
            latencies.append(time.perf_counter() - started)
            changes += delivered

    started = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(in_flight)))
    rate = len(accounts) / (time.perf_counter() - started)
    return Phase(rate, latencies, len(accounts), changes)


class Bench:
    """The two syncyard processes, an upstream client, the bare adapter and the database."""

    def __init__(
        self,
        *,
        upstream: Client,
        plaid: PlaidAdapter,
        admin: SandboxAdmin,
        pool: asyncpg.Pool,
        processes: tuple[Any, Any],
        run_id: str,
    ) -> None:
        self.upstream = upstream
        self.plaid = plaid
        self.admin = admin
        self.pool = pool
        self.worker, self.followers = processes
        self.run_id = run_id
        self.cursors: dict[str, str | None] = {}
        self.calls: dict[str, Callable[[str], Awaitable[int]]] = {
            SYNC: self.sync,
            ACCOUNTS: self.accounts,
            WALK: self.walk,
            BARE_ACCOUNTS: self.bare_accounts,
        }

    def command_id(self, prefix: str) -> str:
        return f"{prefix}-{self.run_id}-{uuid.uuid4().hex[:12]}"

    async def sync(self, account: str, count: int = PAGE) -> int:
        cmd = sync(account, self.command_id("s"), space_id=SPACE, count=count)
        return len(_ok(await self.upstream.send(cmd, TIMEOUT_S))["entries"])

    async def accounts(self, account: str) -> int:
        cmd = GetAccounts(command_id=self.command_id("a"), space_id=SPACE, account_id=twin(account))
        _ok(await self.upstream.send(cmd, TIMEOUT_S))
        return 0

    async def walk(self, account: str) -> int:
        """The provider's pages from the account's own cursor, as the orchestrator walks them."""
        link, cursor, changes = link_for("plaid", account), self.cursors.get(account), 0
        for _ in range(MAX_PAGES_PER_SYNC):
            page = await self.plaid.sync_transactions(
                link, cursor=cursor, count=PAGE, timeout_s=TIMEOUT_S
            )
            changes += len(page.added) + len(page.modified) + len(page.removed)
            cursor = page.next_cursor
            if not page.has_more:
                break
        self.cursors[account] = cursor
        return changes

    async def bare_accounts(self, account: str) -> int:
        await self.plaid.get_accounts(link_for("plaid", twin(account)), timeout_s=TIMEOUT_S)
        return 0

    async def register(self, accounts: Sequence[str]) -> None:
        async def one(account: str) -> int:
            cmd = register(account, "plaid", self.command_id("reg"), space_id=SPACE)
            _ok(await self.upstream.send(cmd, TIMEOUT_S))
            return 0

        await closed_loop(accounts, one, IN_FLIGHT)

    async def advance(self, accounts: Sequence[str], **by: Any) -> None:
        async def one(account: str) -> int:
            await self.admin.advance(account, **by)
            return 0

        await closed_loop(accounts, one, IN_FLIGHT)

    async def caught_up(self, timeout: float = TIMEOUT_S) -> None:
        """Until the relay and every read model have handled the whole log."""
        deadline = time.monotonic() + timeout
        while True:
            row = await self.pool.fetchrow(
                "SELECT (SELECT COALESCE(MAX(notification_id), 0) FROM syncyard_events) AS head,"
                " (SELECT COALESCE(MIN(position), 0) FROM syncyard_projection_position) AS read,"
                " (SELECT COALESCE(MIN(position), 0) FROM syncyard_relay_position) AS relayed"
            )
            assert row is not None
            if min(row["read"], row["relayed"]) >= row["head"]:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"the followers did not catch up within {timeout}s: {dict(row)}")
            await asyncio.sleep(0.01)

    async def phase(self, config: str, accounts: Sequence[str], serial: int) -> Phase:
        """The first `serial` accounts one at a time (latency), the rest IN_FLIGHT at a time
        (throughput); with the CPU both syncyard processes spent, per call."""
        call = self.calls[config]
        worker, followers = _cpu(self.worker), _cpu(self.followers)
        alone = await closed_loop(accounts[:serial], call, 1)
        together = await closed_loop(accounts[serial:], call, IN_FLIGHT)
        result = Phase(
            together.rate, alone.latencies, len(accounts), alone.changes + together.changes
        )
        if config in THROUGH_SYNCYARD:
            await self.caught_up()
            result.worker_cpu = (_cpu(self.worker) - worker) / len(accounts)
            result.followers_cpu = (_cpu(self.followers) - followers) / len(accounts)
        return result


async def syncs(bench: Bench, scale: Scale, results: Results) -> None:
    """(s): history rounds (a group each), then new activity and nothing new, alternating."""
    groups = [[f"{bench.run_id}-{g}-{i}" for i in range(scale.group)] for g in range(scale.groups)]
    everyone = [account for group in groups for account in group]
    warm = [f"{bench.run_id}-warm-{i}" for i in range(IN_FLIGHT * 2)]
    await bench.register([a for account in warm + everyone for a in (account, twin(account))])
    for _ in range(2):  # first syncs, then nothing new: nothing recorded
        for config in CONFIGS:
            await bench.phase(config, warm, IN_FLIGHT)
    rounds = [(HISTORY, group) for group in groups]
    rounds += [(kind, everyone) for _ in range(scale.rounds) for kind in (NEW, NOTHING)]
    for i, (kind, accounts) in enumerate(rounds):
        if kind == NEW:
            await bench.advance(accounts, days=1)
        for config in CONFIGS[i % 4 :] + CONFIGS[: i % 4]:
            results.phases[kind][config].append(await bench.phase(config, accounts, scale.serial))


async def big_feed(bench: Bench) -> tuple[str, int]:
    """An account whose feed holds at least READ_LIMIT entries, every one projected."""
    account = f"{bench.run_id}-big"
    await bench.register([account])
    await bench.admin.advance(account, transactions=READ_LIMIT)
    position = 0
    while position < READ_LIMIT:
        cmd = sync(account, bench.command_id("big"), space_id=SPACE, count=500)
        data = _ok(await bench.upstream.send(cmd, TIMEOUT_S))
        position = int(data["position"])
        if not data["has_more"] and position < READ_LIMIT:
            await bench.admin.advance(account, transactions=READ_LIMIT // 2)
    await bench.caught_up()
    return account, position


async def reads(bench: Bench, nats_url: str, http_url: str, scale: Scale, results: Results) -> None:
    """(r): feed.read and the HTTP route beside a bare SELECT and NATS round trips."""
    account, position = await big_feed(bench)
    results.feed_entries = position
    connection_id = connection_id_for(SPACE, account)
    nc = bench.upstream.nc
    read = encode(
        ReadFeed(
            command_id=bench.command_id("read"),
            space_id=SPACE,
            account_id=account,
            since=0,
            limit=READ_LIMIT,
        )
    )
    answer = await nc.request(rpc_subject("feed.read"), read, timeout=TIMEOUT_S)
    entries = _ok(decode_result(answer.data))["entries"]
    if len(entries) != READ_LIMIT:
        raise SystemExit(f"feed.read answered {len(entries)} entries, not {READ_LIMIT}")
    results.read_bytes = len(answer.data)
    sized = bytes(len(answer.data))
    url = f"{http_url}/v1/accounts/{account}/transactions/changes"
    params = {"space_id": SPACE, "since": "0", "limit": str(READ_LIMIT)}
    select = (
        "SELECT entry FROM feed WHERE connection_id = $1 AND position > $2 "
        "ORDER BY position LIMIT $3"
    )
    # NATS round trips beside syncyard's, on subjects of their own: an operator's.
    responder = await bus.connect(nats_url, bus.ADMIN)
    echoer = await bus.connect(nats_url, bus.ADMIN)

    async def empty_reply(msg: Msg) -> None:
        await msg.respond(b"")

    async def sized_reply(msg: Msg) -> None:
        await msg.respond(sized)

    await responder.subscribe("bench.echo.empty", cb=empty_reply)
    await responder.subscribe("bench.echo.sized", cb=sized_reply)
    await responder.flush()
    try:
        async with aiohttp.ClientSession() as http:

            async def rpc() -> None:
                await nc.request(rpc_subject("feed.read"), read, timeout=TIMEOUT_S)

            async def route() -> None:
                async with http.get(url, params=params, headers=AUTH) as response:
                    assert response.status == 200
                    await response.read()

            async def bare_select() -> None:
                rows = await bench.pool.fetch(select, connection_id, 0, READ_LIMIT)
                assert len(rows) == READ_LIMIT

            async def echo_empty() -> None:
                await echoer.request("bench.echo.empty", b"", timeout=TIMEOUT_S)

            async def echo_sized() -> None:
                await echoer.request("bench.echo.sized", b"", timeout=TIMEOUT_S)

            results.reads = await interleaved(
                {
                    "rpc": rpc,
                    "http": route,
                    "select": bare_select,
                    "empty": echo_empty,
                    "sized": echo_sized,
                },
                scale.reads,
                warm=10,
            )
    finally:
        await responder.drain()
        await echoer.drain()


def _env(nats_url: str, db_url: str, sandbox_url: str, http_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "NATS_URL": nats_url,
        **bus.env(nats_url),
        "DATABASE_URL": db_url,
        "SYNCYARD_CIPHER_KEY": CIPHER_KEY,
        "SYNCYARD_SANDBOX_URL": sandbox_url,
        "SYNCYARD_PLAID_BASE_URL": f"{sandbox_url}/plaid",
        "SYNCYARD_MX_BASE_URL": f"{sandbox_url}/mx",
        "SYNCYARD_HTTP_PORT": str(http_port),
        "SYNCYARD_API_TOKENS": API_TOKENS_ENV,
        # The sandbox speaks http on loopback; outside embedded mode that must be said.
        "SYNCYARD_INSECURE_PROVIDERS": "1",
    }


async def measure(scale: Scale) -> Results:
    results = Results()
    run_id = uuid.uuid4().hex[:6]  # JetStream would drop a second run's command ids
    async with servers() as (nats_url, pg_url), sandbox() as sandbox_url:
        db = await fresh_database(pg_url)
        http_port = find_free_port()
        env = _env(nats_url, db, sandbox_url, http_port)
        worker = Component("worker", env)
        followers = Component("relay,projector,api", env)
        pool = await asyncpg.create_pool(db, min_size=1, max_size=2)
        assert pool is not None
        try:
            await followers.start()  # migrates the read models the worker's reads wait on
            await worker.start()
            assert worker.proc is not None
            assert followers.proc is not None
            processes = (psutil.Process(worker.proc.pid), psutil.Process(followers.proc.pid))
            async with client(nats_url) as upstream, aiohttp.ClientSession() as http:
                plaid = PlaidAdapter(
                    http, base_url=f"{sandbox_url}/plaid", client_id="bench", secret="b"
                )
                bench = Bench(
                    upstream=upstream,
                    plaid=plaid,
                    admin=SandboxAdmin(http, sandbox_url),
                    pool=pool,
                    processes=processes,
                    run_id=run_id,
                )
                await syncs(bench, scale, results)
                await reads(bench, nats_url, f"http://127.0.0.1:{http_port}", scale, results)
        finally:
            await worker.stop()
            await followers.stop()
            await pool.close()
    return results


# -- the table ---------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _p(samples: list[float]) -> str:
    return f"p50 {_ms(pct(samples, 50))}, p99 {_ms(pct(samples, 99))}"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _per_round(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def sync_rows(kind: str, phases: dict[str, list[Phase]]) -> list[Row]:
    sync_p, acc_p, walk_p = phases[SYNC], phases[ACCOUNTS], phases[WALK]
    pooled = {c: [s for p in phases[c] for s in p.latencies] for c in CONFIGS}
    rates = {c: [p.rate for p in phases[c]] for c in CONFIGS}
    vs_accounts = [s.rate / a.rate for s, a in zip(sync_p, acc_p, strict=True)]
    vs_walk = [s.rate / w.rate for s, w in zip(sync_p, walk_p, strict=True)]
    own_sync = pct(pooled[SYNC], 50) - pct(pooled[WALK], 50)
    own_accounts = pct(pooled[ACCOUNTS], 50) - pct(pooled[BARE_ACCOUNTS], 50)
    cpu = {
        c: (
            _median([p.worker_cpu for p in phases[c]]),
            _median([p.followers_cpu for p in phases[c]]),
        )
        for c in THROUGH_SYNCYARD
    }
    entries = sum(p.changes for p in sync_p) / sum(p.calls for p in sync_p)
    changes = sum(p.changes for p in walk_p) / sum(p.calls for p in walk_p)
    serial = len(sync_p[0].latencies)
    return [
        (
            f"(s) {kind}: syncs/s, {IN_FLIGHT} in flight ({len(sync_p)} rounds of "
            f"{sync_p[0].calls - serial}; {entries:.1f} feed entries, {changes:.1f} provider "
            "changes per sync)",
            f"**{_median(rates[SYNC]):,.0f}/s** ({_per_round(rates[SYNC], ',.0f')})",
            f"**{_median(vs_accounts):.2f}× accounts.get** ({_median(rates[ACCOUNTS]):,.0f}/s; "
            f"{_per_round(vs_accounts, '.2f')}), {_median(vs_walk):.2f}× the bare walk "
            f"({_median(rates[WALK]):,.0f}/s), bare /accounts/get "
            f"{_median(rates[BARE_ACCOUNTS]):,.0f}/s",
        ),
        (
            f"(s) {kind}: command → result, one at a time ({len(pooled[SYNC])} calls)",
            _p(pooled[SYNC]),
            f"accounts.get {_p(pooled[ACCOUNTS])} "
            f"({pct(pooled[SYNC], 50) / pct(pooled[ACCOUNTS], 50):.2f}× at p50, "
            f"{pct(pooled[SYNC], 99) / pct(pooled[ACCOUNTS], 99):.2f}× at p99); bare walk "
            f"{_p(pooled[WALK])}; bare /accounts/get {_p(pooled[BARE_ACCOUNTS])}",
        ),
        (
            f"(s) {kind}: syncyard's own time per command (p50 − its bare call's p50)",
            f"sync +{_ms(own_sync)}",
            f"accounts.get +{_ms(own_accounts)}: the feed ≈ +{_ms(own_sync - own_accounts)}",
        ),
        (
            f"(s) {kind}: CPU per command, worker / followers process",
            f"{_ms(cpu[SYNC][0])} / {_ms(cpu[SYNC][1])}",
            f"accounts.get {_ms(cpu[ACCOUNTS][0])} / {_ms(cpu[ACCOUNTS][1])}: "
            f"{cpu[SYNC][0] / cpu[ACCOUNTS][0]:.2f}× / {cpu[SYNC][1] / cpu[ACCOUNTS][1]:.2f}×",
        ),
    ]


def read_rows(results: Results) -> list[Row]:
    r = results.reads
    p50 = {label: pct(samples, 50) for label, samples in r.items()}
    kib = results.read_bytes / 1024
    own = p50["rpc"] - p50["select"] - p50["sized"]
    return [
        (
            f"(r) feed.read over RPC, {READ_LIMIT:,} entries ({kib:,.0f} KiB answer; "
            f"feed of {results.feed_entries:,})",
            f"**{_p(r['rpc'])}**",
            f"{p50['rpc'] / p50['select']:.1f}× the SELECT, "
            f"{p50['rpc'] / p50['sized']:.1f}× a NATS round trip of the same size; "
            f"syncyard's own +{_ms(own)} at p50",
        ),
        (
            f"(r) GET /v1/accounts/{{id}}/transactions/changes?limit={READ_LIMIT}",
            f"**{_p(r['http'])}**",
            f"{p50['http'] / p50['select']:.1f}× the SELECT, {p50['http'] / p50['rpc']:.2f}× "
            "feed.read over RPC",
        ),
        ("(r) bare asyncpg SELECT of the same rows (nothing decoded)", _p(r["select"]), "baseline"),
        ("(r) core NATS request/reply, empty reply", _p(r["empty"]), "baseline"),
        (f"(r) core NATS request/reply, {kib:,.0f} KiB reply", _p(r["sized"]), "baseline"),
    ]


async def main(quick: bool) -> None:
    scale = QUICK if quick else FULL
    started = time.perf_counter()
    results = await measure(scale)
    rows = [row for kind, phases in results.phases.items() for row in sync_rows(kind, phases)]
    rows += read_rows(results)
    heading = (
        f"syncyard feed benchmark (#10) — {machine()}, "
        f"{'quick' if quick else 'full'}, {time.perf_counter() - started:.0f} s"
    )
    notes = [
        f"{scale.groups * scale.group} accounts at Plaid (sandbox, no scenario), "
        f"pages of {PAGE}; syncyard as two processes (worker; relay + projector + api)",
        f"each phase: the round's first {scale.serial} accounts one at a time (the "
        f"latencies: percentiles of every such call of the kind's rounds), the rest "
        f"{IN_FLIGHT} at a time (calls/s: medians over rounds, each ratio within its round)",
        "CPU: psutil user + system of each process over the phase, until the followers "
        "caught up, divided by the phase's commands; median over rounds",
        f"(r): {scale.reads} calls each, round robin ({len(results.reads)} configurations)",
    ]
    print(render(heading, rows, notes))


if __name__ == "__main__":
    run(
        main,
        "python -m bench.feed",
        quick=f"{QUICK.groups * QUICK.group} accounts, {QUICK.rounds} rounds of each kind, "
        f"{QUICK.reads} reads, instead of {FULL.groups * FULL.group}, {FULL.rounds} and "
        f"{FULL.reads}",
    )

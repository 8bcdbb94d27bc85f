"""`make bench`: the spine's throughput and latency, side by side with raw baselines.

Everything runs in one process against the same servers in the same run
(embedded ones in a temporary folder, or NATS_URL / DATABASE_URL), so the
ratios mean something on a shared, noisy machine. Prints a Markdown table;
docs/BENCHMARKS.md keeps a copy with the machine it ran on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import aiohttp
import asyncpg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from nats.js.api import ConsumerConfig, RetentionPolicy

from bench import pipeline
from bench.cli import run
from bench.cpu import CpuMeter, per_command_us
from bench.report import Row, machine, pct, render
from bench.servers import (
    CIPHER_KEY,
    bench_settings,
    embedded_servers,
    fresh_database,
    sandbox_process,
)
from events.codec import decode_result, encode
from events.commands import RegisterConnection, SyncTransactions
from events.subjects import HEADER_COMMAND_ID, HEADER_MSG_ID, command_msg_id, command_subject
from infra.bootstrap import pg_parts
from infra.eventstore import EVENTS_TABLE, library_env
from projections.schemas import POSITIONS as PROJECTION_POSITIONS
from services.orchestrator import MAX_PAGES_PER_SYNC, Orchestrator
from services.providers.registry import build_providers
from tests.support import bus
from tests.support.harness import Component
from tests.support.links import link_for


# -- (a) baselines -----------------------------------------------------------
async def raw_jetstream_publish(nats_url: str, n: int) -> float:
    nc = await bus.connect(nats_url, bus.ADMIN)  # a stream of its own: an operator's
    js = nc.jetstream()
    await js.add_stream(name="BENCH_RAW", subjects=["bench.raw"])
    started = time.perf_counter()
    for i in range(n):
        await js.publish("bench.raw", b'{"i":%d}' % i)
    rate = n / (time.perf_counter() - started)
    await js.delete_stream("BENCH_RAW")
    await nc.drain()
    return rate


async def raw_postgres_commits(db_url: str, n: int) -> float:
    conn = await asyncpg.connect(db_url)
    await conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, body text)")
    started = time.perf_counter()
    for i in range(n):
        await conn.execute("INSERT INTO bench_raw (body) VALUES ($1)", f"row {i}")
    rate = n / (time.perf_counter() - started)
    await conn.close()
    return rate


# -- (d) the bare library ----------------------------------------------------
class Counter(Aggregate):
    @event("Counted")
    def count(self) -> None:
        pass


def library_saves(db_url: str, threads: int, per_thread: int, db_functions: bool) -> float:
    env = library_env(pg_parts(db_url), CIPHER_KEY)
    env.pop("CIPHER_TOPIC")
    env.pop("CIPHER_KEY")
    env["POSTGRES_ENABLE_DB_FUNCTIONS"] = "y" if db_functions else "n"
    app: Application[Any] = Application(env={**env, "POSTGRES_POOL_SIZE": str(threads)})

    def work() -> None:
        for _ in range(per_thread):
            app.save(Counter())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rate = threads * per_thread / (time.perf_counter() - started)
    app.close()
    return rate


# -- (b) end to end ----------------------------------------------------------
SETTLE_S = 0.5
# A paced run first walks every account's history to its end (13 pages and 64
# entries in the sandbox at 5 a page: two syncs, a sync walking at most 10 pages),
# all accounts at once, and waits for the followers: 100 backfills at once are not
# the steady state. Until 2026-12-05 they fell into the paced run's first second
# and read as a process's slow start (p99 ~650 ms there). The paced run's first
# `WARMUP_S` are still reported apart from the rest: a process's first commands at
# a rate after its start.
WARMUP_S = 2.0
FIRST_SYNC = "first-"
FIRST_SYNC_ROUNDS = 10
# Every component but the API: what `make run` ran until issue #13 (it now starts the
# relay and projector as a second process, the split shape below).
ONE_PROCESS = "worker,relay,projector,provider_status"
SPLIT = ("worker", "relay,projector")
# Each process's name in the CPU table, by the components it runs.
PROCESS_NAMES = {ONE_PROCESS: "syncyard", "worker": "worker", "relay,projector": "relay+projector"}


class Run(NamedTuple):
    """One end-to-end run: its rate, its latencies (ms), and CPU µs per command per process."""

    rate: float
    latencies: list[float]
    cpu_us: dict[str, float]
    # Paced runs: the latencies of the first `WARMUP_S` after the processes started,
    # kept apart (cold caches, connections still opening), reported on their own.
    warmup: list[float] = []
    # Paced runs: each account's first sync (its history), all sent at once first.
    first_syncs: list[float] = []


def syncyard_env(nats_url: str, db_url: str, sandbox_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "NATS_URL": nats_url,
        **bus.env(nats_url),
        "DATABASE_URL": db_url,
        "SYNCYARD_CIPHER_KEY": CIPHER_KEY,
        "SYNCYARD_PLAID_BASE_URL": f"{sandbox_url}/plaid",
        "SYNCYARD_MX_BASE_URL": f"{sandbox_url}/mx",
        # The sandbox speaks http:// only, and holds no secret.
        "SYNCYARD_INSECURE_PROVIDERS": "1",
        "SYNCYARD_PLAID_CLIENT_ID": "sandbox-client",
        "SYNCYARD_PLAID_SECRET": "sandbox-secret",
        "SYNCYARD_MX_CLIENT_ID": "sandbox-client",
        "SYNCYARD_MX_SECRET": "sandbox-secret",
    }


@contextlib.asynccontextmanager
async def processes(shapes: tuple[str, ...], env: dict[str, str]) -> AsyncIterator[dict[str, int]]:
    """`syncyard serve --components …` per shape, each in its own process (the one-process
    shape is what `make run` ran until issue #13): their pids by name, the client here."""
    procs = [Component(components, env) for components in shapes]
    try:
        for proc in procs:
            await proc.start()
        pids = {}
        for shape, proc in zip(shapes, procs, strict=True):
            assert proc.proc is not None
            pids[PROCESS_NAMES[shape]] = proc.proc.pid
        yield pids
    finally:
        for proc in procs:
            await proc.stop()


@contextlib.asynccontextmanager
async def bare_pipeline(
    nats_url: str, db_url: str, sandbox_url: str
) -> AsyncIterator[dict[str, int]]:
    """`bench.pipeline` in its own process, on a work queue of its own."""
    nc = await bus.connect(nats_url, bus.ADMIN)
    js = nc.jetstream()
    await js.add_stream(
        name=pipeline.STREAM, subjects=[pipeline.SUBJECT], retention=RetentionPolicy.WORK_QUEUE
    )
    await js.add_consumer(
        pipeline.STREAM, ConsumerConfig(durable_name=pipeline.CONSUMER, ack_wait=30)
    )
    admin = bus.credentials(nats_url).get(bus.ADMIN)
    env = dict(os.environ)
    if admin is not None and admin.password_file is not None:
        env[pipeline.USER_VARIABLE] = admin.user or ""
        env[pipeline.PASSWORD_FILE_VARIABLE] = str(admin.password_file)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.pipeline",
        nats_url,
        db_url,
        sandbox_url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise SystemExit(f"bench.pipeline did not start: {line!r}")
        yield {"bare pipeline": proc.pid}
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await js.delete_stream(pipeline.STREAM)
        await nc.drain()


async def end_to_end(
    nats_url: str,
    db_url: str,
    sandbox_url: str,
    n: int,
    rate: float | None,
    *,
    shape: str,
    shared: dict[str, int | None],
) -> Run:
    """Commands/s (unpaced) or latencies at a fixed `rate`; latency = publish → result.

    `shape`: "one" (one syncyard process), "split" (worker, relay+projector) or
    "bare" (bench.pipeline). `shared`: the processes every shape uses (the
    sandbox, nats-server, the postmaster), whose CPU the run reads too. At a
    fixed rate, `WARMUP_S` of commands go first; their latencies are the
    run's `warmup`, the `n` after them its `latencies`; before them, each
    account's first sync (its history walk) is sent at once, timed as the run's
    `first_syncs`, and the followers are let catch up.
    """
    bare = shape == "bare"
    running = (
        bare_pipeline(nats_url, db_url, sandbox_url)
        if bare
        else processes(
            (ONE_PROCESS,) if shape == "one" else SPLIT,
            syncyard_env(nats_url, db_url, sandbox_url),
        )
    )
    async with running as own:
        meter = CpuMeter({**own, **shared}, with_children=frozenset({"postgres"}))
        nc = await bus.connect(nats_url, bus.ADMIN if bare else bus.UPSTREAM)
        js = nc.jetstream()
        warm = 0 if rate is None else int(rate * WARMUP_S)
        sent: dict[str, float] = {}
        warming: set[str] = set()
        latencies: list[float] = []
        warmup: list[float] = []
        done = asyncio.Event()
        failures: list[str] = []

        first_syncs: list[float] = []
        # The backfill's rounds: which account each first sync is for, the accounts
        # whose walk stopped with more to come, and how many of a round are unanswered.
        first_account: dict[str, int] = {}
        more_to_come: set[int] = set()
        unanswered = [0]
        round_answered = asyncio.Event()
        accounts = int(os.environ.get("BENCH_ACCOUNTS", "100"))

        timeline: dict[int, list[float]] = {}  # BENCH_TIMELINE: latencies per quarter second

        async def on_result(msg: Any) -> None:
            cid = (msg.headers or {}).get(HEADER_COMMAND_ID, "")
            if cid in sent:
                sent_at = sent.pop(cid)
                latency = (time.perf_counter() - sent_at) * 1000
                if cid.startswith(FIRST_SYNC):
                    first_syncs.append(latency)
                    answer = json.loads(msg.data) if bare else decode_result(msg.data).data
                    if (answer or {}).get("has_more"):
                        more_to_come.add(first_account[cid])
                    unanswered[0] -= 1
                    if unanswered[0] == 0:
                        round_answered.set()
                else:
                    (warmup if cid in warming else latencies).append(latency)
                    timeline.setdefault(int((sent_at - started) * 4), []).append(latency)
                if not bare:
                    result = decode_result(msg.data)
                    if not result.success:
                        failures.append(f"{cid}: {result.error}")
                if len(latencies) == n and len(warmup) == warm:
                    done.set()

        await nc.subscribe(
            pipeline.RESULTS if bare else "syncyard.result.sync.transactions", cb=on_result
        )
        # A second run's ids: the bare queue's JetStream drops them, syncyard answers resends.
        run = uuid.uuid4().hex[:8]
        for a in range(0 if bare else accounts):
            reg = RegisterConnection(
                command_id=f"reg-{run}-{a}",
                space_id="bench",
                account_id=f"a{a}",
                provider="plaid",
                item_id=f"item-{a}",
                access_token=f"access-sandbox-{a}",
            )
            await js.publish(
                command_subject(reg.op),
                encode(reg),
                headers={HEADER_MSG_ID: command_msg_id(reg.space_id, reg.command_id)},
            )
        await asyncio.sleep(1.0)

        async def publish(i: int, prefix: str = "s-") -> None:
            cmd = SyncTransactions(
                command_id=f"{prefix}{uuid.uuid4().hex}",
                space_id="bench",
                account_id=f"a{i % accounts}",
                count=5,
            )
            if prefix == FIRST_SYNC:
                first_account[cmd.command_id] = i
            elif i < warm:
                warming.add(cmd.command_id)
            sent[cmd.command_id] = time.perf_counter()
            await js.publish(
                pipeline.SUBJECT if bare else command_subject(cmd.op),
                encode(cmd),
                headers={HEADER_MSG_ID: command_msg_id(cmd.space_id, cmd.command_id)},
            )

        async def backfill() -> None:
            """Each account's history, walked to its end: a sync walks at most
            MAX_PAGES_PER_SYNC pages, and a walk that stops with more to come is
            sent again, as an app would (the sandbox's 64 entries take two)."""
            behind = set(range(accounts))
            for _ in range(FIRST_SYNC_ROUNDS):
                if not behind:
                    break
                more_to_come.clear()
                round_answered.clear()
                unanswered[0] = len(behind)
                await asyncio.gather(*(publish(a, FIRST_SYNC) for a in sorted(behind)))
                await asyncio.wait_for(round_answered.wait(), 300)
                behind = set(more_to_come)
            if behind:
                raise SystemExit(f"{len(behind)} accounts still behind after the backfill")
            if not bare:
                await followers_caught_up(db_url)

        started = time.perf_counter()
        if rate is not None:
            await backfill()
        before = meter.read()
        started = time.perf_counter()
        if rate is None:
            for chunk in range(0, n, 256):
                await asyncio.gather(*(publish(i) for i in range(chunk, min(n, chunk + 256))))
        else:
            pending = []
            for i in range(warm + n):
                target = started + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(publish(i)))
            await asyncio.gather(*pending)
        await asyncio.wait_for(done.wait(), 300)
        throughput = (warm + n) / (time.perf_counter() - started)
        # The followers (relay, projector) finish after the last result: their work
        # belongs to these commands too, and left over it would burden the next run.
        await asyncio.sleep(SETTLE_S)
        if not bare:
            await followers_caught_up(db_url)
        after = meter.read()
        if rate is not None and os.environ.get("BENCH_TIMELINE"):
            for quarter, those in sorted(timeline.items())[:16]:
                print(
                    f"  {shape}: sent at {quarter / 4:.2f} s: {len(those)} commands, "
                    f"p50 {pct(those, 50):.0f} ms, p99 {pct(those, 99):.0f} ms",
                    file=sys.stderr,
                )
        if failures:
            raise SystemExit(f"{len(failures)} commands failed, e.g. {failures[0]}")
        await nc.drain()
    return Run(throughput, latencies, per_command_us(before, after, warm + n), warmup, first_syncs)


CAUGHT_UP_WITHIN_S = 60.0
_BEHIND = f"""
SELECT (SELECT COALESCE(max(notification_id), 0) FROM {EVENTS_TABLE})
     - LEAST((SELECT COALESCE(min(position), 0) FROM syncyard_relay_position),
             (SELECT COALESCE(min(position), 0) FROM {PROJECTION_POSITIONS}))
"""  # noqa: S608 - our tables' names


async def followers_caught_up(db_url: str) -> None:
    """Until the relay and every projection have read the whole event log.

    Until issue #13's 2026-12-05 runs a fixed half second stood for this: a
    backlog left then was not counted in the run's CPU, and the next run's
    processes inherited it (its first seconds' latency).
    """
    conn = await asyncpg.connect(db_url)
    try:
        deadline = time.monotonic() + CAUGHT_UP_WITHIN_S
        while (behind := await conn.fetchval(_BEHIND)) > 0:
            if time.monotonic() > deadline:
                print(f"followers still {behind} notifications behind", file=sys.stderr)
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


# -- (c) orchestrator overhead -----------------------------------------------
async def call_overhead(sandbox_url: str, n: int) -> tuple[float, float]:
    """Median µs of a sync's walk done bare over HTTP, and of the same walk orchestrated.

    The same pages both ways: the orchestrator walks the link's pages from its
    cursor (none here) while the provider has more, up to `MAX_PAGES_PER_SYNC`,
    so the bare side follows `next_cursor` as far. (Until issue #13 the bare side
    made one call against the orchestrator's whole walk, and the row read as a
    tenfold overhead.)"""
    settings = bench_settings(sandbox_url)
    link = link_for("plaid", "o")
    cmd = SyncTransactions(command_id="o", space_id="bench", account_id="o", count=5)
    body = {"client_id": "bench", "secret": "b", "access_token": link.access_token, "count": 5}
    async with aiohttp.ClientSession() as session:
        orch = Orchestrator(
            build_providers(session, settings.providers), hierarchy=settings.hierarchy
        )
        bare: list[float] = []
        through: list[float] = []
        for _ in range(50):  # warm the connection pool
            await orch.execute_with_failover(cmd, [link], "US")
        for _ in range(n):
            t0 = time.perf_counter()
            cursor = ""
            for _ in range(MAX_PAGES_PER_SYNC):
                page_body = {**body, "cursor": cursor} if cursor else body
                async with session.post(
                    f"{sandbox_url}/plaid/transactions/sync", json=page_body
                ) as resp:
                    page = json.loads(await resp.read())
                cursor = page["next_cursor"]
                if not page["has_more"]:
                    break
            bare.append((time.perf_counter() - t0) * 1e6)
            t0 = time.perf_counter()
            outcome = await orch.execute_with_failover(cmd, [link], "US")
            through.append((time.perf_counter() - t0) * 1e6)
            assert outcome.success
    return statistics.median(bare), statistics.median(through)


SHAPES = {
    "one": "one process",
    "split": "worker + followers processes",
    "bare": "bare pipeline (the floor)",
}
# Issue #13's targets, each a ratio within one run (scenario `none`).
TARGET_ONE_VS_DB_FUNCTIONS = 0.6
TARGET_SPLIT_VS_DB_FUNCTIONS = 1.0
TARGET_P99_MS = 25.0
TARGET_WORKER_VS_BARE_CPU = 2.0


def chosen_shapes() -> list[str]:
    """`BENCH_SHAPES=one,bare` runs only those (for A/B runs while profiling)."""
    chosen = os.environ.get("BENCH_SHAPES")
    return [s for s in SHAPES if chosen is None or s in chosen.split(",")]


def cpu_row(shape: str, run: Run) -> Row:
    parts = ", ".join(f"{name} {us:,.0f}" for name, us in run.cpu_us.items())
    total = sum(run.cpu_us.values())
    return (f"(e) CPU per command, unpaced, {SHAPES[shape]}", f"{total:,.0f} µs", parts)


def verdicts(lib_fast: float, runs: dict[str, tuple[Run, Run]]) -> list[str]:
    """One line per target of issue #13: met or not, with the figures."""

    def line(met: bool, text: str) -> str:
        return f"{'met    ' if met else 'NOT MET'}  {text}"

    one, one_paced = runs["one"]
    split = runs["split"][0]
    bare = runs["bare"][0]
    worker_us = split.cpu_us.get("worker", float("nan"))
    bare_us = bare.cpu_us.get("bare pipeline", float("nan"))
    # The whole paced run, its first seconds too: the backfill goes before it.
    p99 = pct([*one_paced.warmup, *one_paced.latencies], 99)
    return [
        line(
            one.rate >= TARGET_ONE_VS_DB_FUNCTIONS * lib_fast,
            f"one process ≥ {TARGET_ONE_VS_DB_FUNCTIONS}× (d'): {one.rate:,.0f} commands/s "
            f"= {one.rate / lib_fast:.2f}× of {lib_fast:,.0f}",
        ),
        line(
            split.rate >= TARGET_SPLIT_VS_DB_FUNCTIONS * lib_fast,
            f"split ≥ {TARGET_SPLIT_VS_DB_FUNCTIONS}× (d'): {split.rate:,.0f} commands/s "
            f"= {split.rate / lib_fast:.2f}× of {lib_fast:,.0f}",
        ),
        line(
            p99 <= TARGET_P99_MS,
            f"p99 command → committed at 500/s, one process ≤ {TARGET_P99_MS:.0f} ms: {p99:.1f} ms "
            f"(first {WARMUP_S:g} s {pct(one_paced.warmup, 99):.1f} ms, "
            f"after them {pct(one_paced.latencies, 99):.1f} ms)",
        ),
        line(
            worker_us <= TARGET_WORKER_VS_BARE_CPU * bare_us,
            f"worker CPU per command ≤ {TARGET_WORKER_VS_BARE_CPU:.0f}× the bare pipeline's: "
            f"{worker_us:,.0f} vs {bare_us:,.0f} µs = {worker_us / bare_us:.2f}× "
            f"(one process, every component: {one.cpu_us.get('syncyard', float('nan')):,.0f} µs)",
        ),
    ]


async def main(quick: bool) -> None:
    scale = 0.25 if quick else 1.0
    runs: dict[str, tuple[Run, Run]] = {}
    async with embedded_servers() as running, sandbox_process() as (sandbox_url, sandbox_pid):
        nats_url, pg_url = running.nats_url, running.pg_url
        shared = {
            "sandbox": sandbox_pid,
            "nats-server": running.nats_pid,
            "postgres": running.postmaster_pid,
        }
        db = await fresh_database(pg_url)
        js_rate = await raw_jetstream_publish(nats_url, int(3000 * scale))
        pg_rate = await raw_postgres_commits(db, int(3000 * scale))
        lib_plain = await asyncio.to_thread(
            library_saves, await fresh_database(pg_url), 4, int(500 * scale), False
        )
        lib_fast = await asyncio.to_thread(
            library_saves, await fresh_database(pg_url), 4, int(500 * scale), True
        )
        for shape in chosen_shapes():
            unpaced = await end_to_end(
                nats_url,
                await fresh_database(pg_url),
                sandbox_url,
                int(4000 * scale),
                None,
                shape=shape,
                shared=shared,
            )
            paced = await end_to_end(
                nats_url,
                await fresh_database(pg_url),
                sandbox_url,
                int(5000 * scale),
                500.0,
                shape=shape,
                shared=shared,
            )
            runs[shape] = (unpaced, paced)
        bare_us, through_us = await call_overhead(sandbox_url, int(1000 * scale))
    rows: list[Row] = [
        ("(a) JetStream publish, awaiting each ack", f"{js_rate:,.0f} msg/s", "baseline"),
        ("(a) PostgreSQL single-row commit, 1 connection", f"{pg_rate:,.0f} tx/s", "baseline"),
        ("(d) eventsourcing save, 1 event/tx, 4 threads", f"{lib_plain:,.0f} events/s", "baseline"),
        ("(d') the same with its database functions on", f"{lib_fast:,.0f} events/s", "baseline"),
    ]
    for shape, (unpaced, paced) in runs.items():
        rows += [
            (
                f"(b) end to end, unpaced, {SHAPES[shape]}",
                f"{unpaced.rate:,.0f} commands/s",
                f"{unpaced.rate / lib_plain:.2f}× (d), {unpaced.rate / lib_fast:.2f}× (d'), "
                f"{unpaced.rate / pg_rate:.2f}× PG commits",
            ),
            (
                f"(b) command → committed at 500/s, {SHAPES[shape]}, after {WARMUP_S:g} s",
                f"p50 {pct(paced.latencies, 50):.1f} ms, p99 {pct(paced.latencies, 99):.1f} ms",
                f"unpaced burst: p50 {pct(unpaced.latencies, 50):.0f} ms, "
                f"p99 {pct(unpaced.latencies, 99):.0f} ms",
            ),
            (
                f"(b) the same, the first {WARMUP_S:g} s of the paced run",
                f"p50 {pct(paced.warmup, 50):.1f} ms, p99 {pct(paced.warmup, 99):.1f} ms",
                "a process's first commands at a rate",
            ),
            (
                f"(b) the backfill before the paced run: {len(paced.first_syncs)} syncs, "
                "each account's at once",
                f"p50 {pct(paced.first_syncs, 50):.0f} ms, p99 {pct(paced.first_syncs, 99):.0f} ms",
                "each walks an account's history, up to 10 pages (64 entries in all)",
            ),
            cpu_row(shape, unpaced),
        ]
    rows.append(
        (
            "(c) a sync's page walk: bare HTTP vs through the orchestrator",
            f"{bare_us:.0f} µs vs {through_us:.0f} µs",
            f"overhead {through_us - bare_us:.0f} µs ({through_us / bare_us:.2f}×)",
        )
    )
    heading = f"syncyard spine benchmark — {machine()}, scale {scale}"
    print(render(heading, rows))
    if set(runs) == set(SHAPES):  # a profiling run may leave some out
        print("\nIssue #13's targets (scenario none, same-run ratios):")
        for verdict in verdicts(lib_fast, runs):
            print(verdict)


if __name__ == "__main__":
    run(main, "python -m bench.spine")

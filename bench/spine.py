"""`make bench`: the spine's throughput and latency, side by side with raw baselines.

Everything runs in one process against the same servers in the same run
(embedded ones in a temporary folder, or NATS_URL / DATABASE_URL), so the
ratios mean something on a shared, noisy machine. Prints a Markdown table;
docs/BENCHMARKS.md keeps a copy with the machine it ran on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.cli import run
from bench.report import machine, pct, render
from bench.servers import CIPHER_KEY, bench_settings, fresh_database, sandbox, servers
from events.codec import decode_result, encode
from events.commands import RegisterConnection, SyncTransactions
from events.subjects import HEADER_COMMAND_ID, HEADER_MSG_ID, command_msg_id, command_subject
from infra.bootstrap import ALL_COMPONENTS, pg_parts
from infra.eventstore import library_env
from services.orchestrator import Orchestrator
from services.providers.registry import build_providers
from tests.support import bus
from tests.support.harness import Component, running_syncyard
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
@contextlib.asynccontextmanager
async def syncyard_running(
    nats_url: str, db_url: str, sandbox_url: str, split: bool
) -> AsyncIterator[None]:
    """One process with every component (as `make run`), or a worker process and a
    relay+projector process (as a deployment would), the client staying here."""
    if not split:
        settings = bench_settings(sandbox_url)
        async with running_syncyard(
            settings, nats_url, db_url, components=ALL_COMPONENTS - {"api"}
        ):
            yield
        return
    env = {
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
    procs = [Component(components, env) for components in ("worker", "relay,projector")]
    try:
        for proc in procs:
            await proc.start()
        yield
    finally:
        for proc in procs:
            await proc.stop()


async def end_to_end(
    nats_url: str, db_url: str, sandbox_url: str, n: int, rate: float | None, *, split: bool
) -> tuple[float, list[float]]:
    """Commands/s (unpaced) or latencies at a fixed `rate`; latency = publish → result."""
    async with syncyard_running(nats_url, db_url, sandbox_url, split):
        nc = await bus.connect(nats_url)
        js = nc.jetstream()
        sent: dict[str, float] = {}
        latencies: list[float] = []
        done = asyncio.Event()
        failures: list[str] = []

        async def on_result(msg: Any) -> None:
            cid = (msg.headers or {}).get(HEADER_COMMAND_ID, "")
            if cid in sent:
                latencies.append((time.perf_counter() - sent.pop(cid)) * 1000)
                result = decode_result(msg.data)
                if not result.success:
                    failures.append(f"{cid}: {result.error}")
                if len(latencies) == n:
                    done.set()

        await nc.subscribe("syncyard.result.sync.transactions", cb=on_result)
        accounts = int(os.environ.get("BENCH_ACCOUNTS", "100"))
        run = uuid.uuid4().hex[:8]  # JetStream would drop a second run's ids as duplicates
        for a in range(accounts):
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

        async def publish(i: int) -> None:
            cmd = SyncTransactions(
                command_id=f"s-{uuid.uuid4().hex}",
                space_id="bench",
                account_id=f"a{i % accounts}",
                count=5,
            )
            sent[cmd.command_id] = time.perf_counter()
            await js.publish(
                command_subject(cmd.op),
                encode(cmd),
                headers={HEADER_MSG_ID: command_msg_id(cmd.space_id, cmd.command_id)},
            )

        started = time.perf_counter()
        if rate is None:
            for chunk in range(0, n, 256):
                await asyncio.gather(*(publish(i) for i in range(chunk, min(n, chunk + 256))))
        else:
            pending = []
            for i in range(n):
                target = started + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(publish(i)))
            await asyncio.gather(*pending)
        await asyncio.wait_for(done.wait(), 300)
        throughput = n / (time.perf_counter() - started)
        if failures:
            raise SystemExit(f"{len(failures)} commands failed, e.g. {failures[0]}")
        await nc.drain()
    return throughput, latencies


# -- (c) orchestrator overhead -----------------------------------------------
async def call_overhead(sandbox_url: str, n: int) -> tuple[float, float]:
    """Median µs of a bare HTTP call to the sandbox, and of the same call orchestrated."""
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
            async with session.post(f"{sandbox_url}/plaid/transactions/sync", json=body) as resp:
                await resp.read()
            bare.append((time.perf_counter() - t0) * 1e6)
            t0 = time.perf_counter()
            outcome = await orch.execute_with_failover(cmd, [link], "US")
            through.append((time.perf_counter() - t0) * 1e6)
            assert outcome.success
    return statistics.median(bare), statistics.median(through)


async def main(quick: bool) -> None:
    scale = 0.25 if quick else 1.0
    e2e: dict[bool, tuple[float, list[float], list[float]]] = {}
    async with servers() as (nats_url, pg_url), sandbox() as sandbox_url:
        db = await fresh_database(pg_url)
        js_rate = await raw_jetstream_publish(nats_url, int(3000 * scale))
        pg_rate = await raw_postgres_commits(db, int(3000 * scale))
        lib_plain = await asyncio.to_thread(
            library_saves, await fresh_database(pg_url), 4, int(500 * scale), False
        )
        lib_fast = await asyncio.to_thread(
            library_saves, await fresh_database(pg_url), 4, int(500 * scale), True
        )
        for split in (False, True):
            rate, unpaced = await end_to_end(
                nats_url,
                await fresh_database(pg_url),
                sandbox_url,
                int(4000 * scale),
                None,
                split=split,
            )
            _, paced = await end_to_end(
                nats_url,
                await fresh_database(pg_url),
                sandbox_url,
                int(5000 * scale),
                500.0,
                split=split,
            )
            e2e[split] = (rate, unpaced, paced)
        bare_us, through_us = await call_overhead(sandbox_url, int(1000 * scale))
    rows = [
        ("(a) JetStream publish, awaiting each ack", f"{js_rate:,.0f} msg/s", "baseline"),
        ("(a) PostgreSQL single-row commit, 1 connection", f"{pg_rate:,.0f} tx/s", "baseline"),
        ("(d) eventsourcing save, 1 event/tx, 4 threads", f"{lib_plain:,.0f} events/s", "baseline"),
        ("(d') the same with its database functions on", f"{lib_fast:,.0f} events/s", "baseline"),
    ]
    for split, (rate, unpaced, paced) in e2e.items():
        shape = "worker + followers processes" if split else "one process (make run)"
        rows += [
            (
                f"(b) end to end, unpaced, {shape}",
                f"{rate:,.0f} commands/s",
                f"{rate / lib_plain:.2f}× (d), {rate / lib_fast:.2f}× (d'), "
                f"{rate / pg_rate:.2f}× PG commits",
            ),
            (
                f"(b) command → committed at 500/s, {shape}",
                f"p50 {pct(paced, 50):.1f} ms, p99 {pct(paced, 99):.1f} ms",
                f"unpaced burst: p50 {pct(unpaced, 50):.0f} ms, p99 {pct(unpaced, 99):.0f} ms",
            ),
        ]
    rows.append(
        (
            "(c) provider call: bare HTTP vs through the orchestrator",
            f"{bare_us:.0f} µs vs {through_us:.0f} µs",
            f"overhead {through_us - bare_us:.0f} µs ({through_us / bare_us:.2f}×)",
        )
    )
    heading = f"syncyard spine benchmark — {machine()}, scale {scale}"
    print(render(heading, rows))


if __name__ == "__main__":
    run(main, "python -m bench.spine")

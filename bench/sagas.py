"""Link sagas: completed per second, and the engine's cost per step against bare calls.

The sandbox runs in its own process with no scenario (it answers at once).
Each link flow makes the same provider calls either way: create a link,
the person finishes (the sandbox's `/_admin/links` answers the public
token), exchange, read accounts, first sync. The baseline makes them
straight through the Plaid adapter; the saga makes them through `link.start`
and `link.complete` handled in-process (no NATS hop), the runner and the
event store, waiting for each saga by polling its stream every 5 ms (the
waiting is part of the measured time). Per-step overhead is the difference
in latency of one flow run alone, divided by the flow's five steps.
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.cli import run
from bench.report import pct
from bench.servers import bench_settings, fresh_database, sandbox, servers
from events.commands import CompleteLink, StartLink
from infra.bootstrap import Runtime
from infra.saga_store import PostgresSagaStore
from sagas.flows import LINK_FLOW
from sagas.state import SagaState, saga_id_for
from services.providers.base import LinkRequest
from services.providers.plaid.adapter import PlaidAdapter
from tests.support.harness import running_syncyard
from tests.support.sandbox_admin import SandboxAdmin

SPACE = "bench"
POLL_S = 0.005


async def _person(admin: SandboxAdmin, link_token: str) -> str:
    return str((await admin.complete_link("plaid", link_token))["public_token"])


async def bare_flow(plaid: PlaidAdapter, admin: SandboxAdmin) -> None:
    token = await plaid.create_link(LinkRequest(user_ref="bench"), timeout_s=5)
    linked = await plaid.exchange_token(await _person(admin, token.token), timeout_s=5)
    await plaid.get_accounts(linked, timeout_s=5)
    await plaid.sync_transactions(linked, cursor=None, count=100, timeout_s=5)


async def _until(store: PostgresSagaStore, command_id: str, done: str) -> SagaState:
    saga_id = saga_id_for(SPACE, command_id)
    while True:
        state = await store.load(saga_id)
        if state is not None and (state.finished if done == "end" else done in state.outputs):
            return state
        await asyncio.sleep(POLL_S)


async def saga_flow(runtime: Runtime, admin: SandboxAdmin, n: int) -> SagaState:
    assert runtime.sagas is not None
    command_id, account = f"link-{n}", f"acct-{n}"
    await runtime.execute(StartLink(command_id=command_id, space_id=SPACE, account_id=account))
    created = await _until(runtime.sagas, command_id, "create_link")
    public_token = await _person(admin, str(created.outputs["create_link"]["link_token"]))
    await runtime.execute(
        CompleteLink(
            command_id=f"done-{n}",
            space_id=SPACE,
            account_id=account,
            link_command_id=command_id,
            public_token=public_token,
        )
    )
    return await _until(runtime.sagas, command_id, "end")


Flow = Callable[[int], Awaitable[None]]


async def _timed_serial(flow: Flow, runs: int) -> list[float]:
    latencies = []
    for i in range(runs):
        started = time.perf_counter()
        await flow(i)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def _rate(flow: Flow, count: int, concurrency: int, offset: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            await flow(offset + i)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - started)


async def main(quick: bool) -> None:
    serial, count, concurrency = (20, 100, 16) if quick else (60, 400, 32)
    steps = len(LINK_FLOW.steps)
    async with servers() as (nats_url, pg_url), sandbox() as sandbox_url:
        db = await fresh_database(pg_url)
        async with (
            aiohttp.ClientSession() as http,
            running_syncyard(
                bench_settings(sandbox_url), nats_url, db, components=frozenset({"worker"})
            ) as runtime,
        ):
            plaid = PlaidAdapter(
                http, base_url=f"{sandbox_url}/plaid", client_id="bench", secret="b"
            )
            admin = SandboxAdmin(http, sandbox_url)

            async def bare(_: int) -> None:
                await bare_flow(plaid, admin)

            async def engine(i: int) -> None:
                state = await saga_flow(runtime, admin, i)
                assert state.status == "completed", state

            bare_ms = await _timed_serial(bare, serial)
            saga_ms = await _timed_serial(engine, serial)
            bare_rate = await _rate(bare, count, concurrency, 0)
            saga_rate = await _rate(engine, count, concurrency, 10_000)
    bare_p50, saga_p50 = statistics.median(bare_ms), statistics.median(saga_ms)
    print(f"\n## Link sagas ({platform.machine()}, {platform.python_version()})\n")
    print("| measure | bare provider calls (baseline) | link saga | ")
    print("| --- | --- | --- |")
    print(f"| one flow alone, p50 | {bare_p50:.1f} ms | {saga_p50:.1f} ms |")
    print(f"| one flow alone, p95 | {pct(bare_ms, 95):.1f} ms | {pct(saga_ms, 95):.1f} ms |")
    print(
        f"| flows completed per second, {concurrency} at a time | {bare_rate:,.1f}/s "
        f"| {saga_rate:,.1f}/s |"
    )
    print(
        f"\nengine overhead per step: {(saga_p50 - bare_p50) / steps:.1f} ms "
        f"(p50 difference over the flow's {steps} steps; {serial} serial flows, {count} "
        "concurrent)"
    )


if __name__ == "__main__":
    run(
        main,
        "python -m bench.sagas",
        quick="20 serial and 100 concurrent flows (16 at a time) instead of 60, 400 and 32",
    )

"""Hedging under `brownout`: p50/p99 of syncs with and without a hedge, and what it costs.

`python -m bench.hedging [--quick]` (also run by `make bench`). The sandbox
runs the `brownout` scenario in its own process: Plaid slow (median 600 ms,
p99 8 s) with hangs and errors, MX slower than usual but answering. Each mode
makes the same number of syncs through `execute_with_failover` on a
connection linked at both, with the same concurrency.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.cli import run
from bench.report import pct
from bench.servers import provider_settings, sandbox
from events.commands import SyncTransactions
from services.orchestrator import Orchestrator
from services.providers.base import LinkCredentials
from services.providers.registry import build_providers
from services.resilience.hedging import HedgePolicy

LINKS = [
    LinkCredentials(provider="plaid", item_id="item-h", access_token="access-sandbox-hedge"),
    LinkCredentials(provider="mx", item_id="MBR-hedge", access_token="USR-hedge"),
]


async def run_mode(sandbox_url: str, *, hedged: bool, n: int, concurrency: int) -> dict[str, float]:
    settings = provider_settings(sandbox_url)
    latencies: list[float] = []
    calls = 0
    failures = 0
    async with aiohttp.ClientSession() as session:
        orch = Orchestrator(
            build_providers(session, settings),
            hierarchy={"US": ("plaid", "mx")},
            call_timeout_s=30.0,
            hedging={"sync.transactions": HedgePolicy()} if hedged else None,
        )
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            nonlocal calls, failures
            cmd = SyncTransactions(command_id=f"h{i}", space_id="b", account_id="h", count=5)
            async with slots:
                started = time.perf_counter()
                outcome = await orch.execute_with_failover(cmd, LINKS, "US")
                latencies.append((time.perf_counter() - started) * 1000)
            calls += len(outcome.attempts)
            failures += not outcome.success

        await asyncio.gather(*(one(i) for i in range(n)))
    return {
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "calls_per_sync": calls / n,
        "failed": failures / n,
    }


async def main(quick: bool) -> None:
    n = 100 if quick else 400
    async with sandbox("brownout") as sandbox_url:
        plain = await run_mode(sandbox_url, hedged=False, n=n, concurrency=40)
        hedged = await run_mode(sandbox_url, hedged=True, n=n, concurrency=40)
    print(f"\nhedging under brownout — {n} syncs per mode, 40 at a time\n")
    print(
        "| mode | p50 | p99 | provider calls per sync | failed |\n| --- | --- | --- | --- | --- |"
    )
    for name, r in (("no hedging", plain), ("hedged past plaid's p95", hedged)):
        print(
            f"| {name} | {r['p50']:.0f} ms | {r['p99']:.0f} ms | {r['calls_per_sync']:.2f} "
            f"| {r['failed']:.1%} |"
        )
    print(f"\np99 with hedging / without: {hedged['p99'] / plain['p99']:.2f}×")


if __name__ == "__main__":
    run(main, "python -m bench.hedging", quick="100 syncs per mode instead of 400")

"""How fast a breaker transition made by one replica reaches another (issue #4: ≤ 100 ms).

`python -m bench.propagation [--quick]` (also run by `make bench`). Two
syncyard runtimes (replicas with their own NATS and PostgreSQL connections,
boards and log followers) share the embedded servers. Replica A trips a
fresh breaker; the time measured runs from A having recorded BreakerOpened
to replica B's board reporting the breaker open (B learns it from the log:
LISTEN/NOTIFY, then a page read).
"""

from __future__ import annotations

import asyncio
import time

from bench.cli import run
from bench.parts import REGION, attempt_event
from bench.report import pct
from bench.servers import bench_settings, fresh_database, servers
from tests.support.harness import running_syncyard


async def main(quick: bool) -> None:
    n = 20 if quick else 100
    delays: list[float] = []
    settings = bench_settings("http://127.0.0.1:9")  # no provider is called here
    replica = frozenset({"worker"})  # a board and its log follower
    async with servers() as (nats_url, pg_url):
        db = await fresh_database(pg_url)
        async with (
            running_syncyard(settings, nats_url, db, components=replica) as a,
            running_syncyard(settings, nats_url, db, components=replica) as b,
        ):
            for i in range(n):
                provider = f"bench{i}"
                for k in range(5):  # the default threshold: 5 failures
                    await a.board.observe(attempt_event(provider, f"c{i}-{k}", ok=False))
                assert a.board.status(provider, REGION) == "open"
                started = time.perf_counter()
                # Polling is the measurement: B has no hook to await.
                while b.board.status(provider, REGION) != "open":  # noqa: ASYNC110
                    await asyncio.sleep(0.0005)
                delays.append((time.perf_counter() - started) * 1000)
    print(f"\nbreaker transition propagation — {n} transitions\n")
    print("| measure | p50 | p99 | max |\n| --- | --- | --- | --- |")
    print(
        f"| BreakerOpened at replica A → open at replica B | {pct(delays, 50):.1f} ms "
        f"| {pct(delays, 99):.1f} ms | {max(delays):.1f} ms |"
    )


if __name__ == "__main__":
    run(main, "python -m bench.propagation", quick="20 transitions instead of 100")

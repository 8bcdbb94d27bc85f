"""`python -m bench [--quick]` (`make bench`): every benchmark, one after the other.

The spine (#2), resilience, hedging and breaker propagation (#4), sagas (#5),
replay and projection lag (#6), the feed (#10). Each starts its own embedded
servers (or uses NATS_URL / DATABASE_URL) and prints its own table beside its
baseline; docs/BENCHMARKS.md keeps copies.
"""

from __future__ import annotations

import argparse
import asyncio

from bench import feed, hedging, projection_lag, propagation, replay, resilience, sagas, spine

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a quarter of the work")
    parser.add_argument(
        "--replay-events", type=int, help="stored events for bench.replay (issue #6 goal: 1000000)"
    )
    args = parser.parse_args()
    quick = args.quick
    asyncio.run(spine.main(quick))
    asyncio.run(resilience.main(quick))
    asyncio.run(hedging.main(quick))
    asyncio.run(propagation.main(quick))
    asyncio.run(sagas.main(quick))
    asyncio.run(replay.main(quick, args.replay_events))
    asyncio.run(projection_lag.main(quick))
    asyncio.run(feed.main(quick))

"""`python -m sandbox [--host H] [--port P] [--seed N] [--scenario S] [--event-loop L]`:
serve it alone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from sandbox.app import run_sandbox
from sandbox.scenarios import available


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--scenario", default="calm", help=f"one of: {', '.join(available())}; 'none' for none"
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="uvloop (when installed) costs less CPU per answer; asyncio, to compare",
    )
    args = parser.parse_args()
    scenario = None if args.scenario == "none" else args.scenario
    serving = run_sandbox(args.host, args.port, seed=args.seed, scenario=scenario)
    with contextlib.suppress(KeyboardInterrupt):
        _run(serving, args.event_loop)


def _run(serving: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Serve on uvloop unless told otherwise or it is absent: with a sync's calls
    arriving one by one, it measured about a sixth less CPU per call than asyncio's
    loop (issue #13, docs/BENCHMARKS.md)."""
    if event_loop == "uvloop":
        try:
            import uvloop  # noqa: PLC0415 - optional: absent, the standard loop runs
        except ImportError:
            pass
        else:
            uvloop.run(serving)
            return
    asyncio.run(serving)


if __name__ == "__main__":
    main()

"""`python -m sandbox [--host H] [--port P] [--seed N] [--scenario S]`: serve it alone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

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
    args = parser.parse_args()
    scenario = None if args.scenario == "none" else args.scenario
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sandbox(args.host, args.port, seed=args.seed, scenario=scenario))


if __name__ == "__main__":
    main()

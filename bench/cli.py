"""The command line benchmark modules share: `python -m bench.<name> [--quick]`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run(
    main: Callable[[bool], Coroutine[Any, Any, None]],
    prog: str,
    quick: str = "a quarter of the work",
) -> None:
    """Parse `--quick` (what it cuts: `quick`) and run `main` with it."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--quick", action="store_true", help=quick)
    asyncio.run(main(parser.parse_args().quick))

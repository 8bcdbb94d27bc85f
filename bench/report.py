"""How benchmarks report: percentiles, units, and the Markdown table docs/BENCHMARKS.md keeps."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Sequence

Row = tuple[str, str, str]  # measure, result, against the baseline


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def median_us(samples: list[float]) -> float:
    """The median of samples in seconds, in µs."""
    return statistics.median(samples) * 1e6


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def machine() -> str:
    """Where the figures come from: they mean little without it."""
    return f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(rows: Iterable[Row]) -> list[str]:
    return [
        "| measure | result | against the baseline |",
        "| --- | --- | --- |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def render(heading: str, rows: Iterable[Row], notes: Sequence[str] = ()) -> str:
    """A heading line, the table, then the notes as a list."""
    lines = [f"\n{heading}\n", *table(rows)]
    if notes:
        lines += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(lines)

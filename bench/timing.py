"""Timing calls so that a noisy, shared machine's drift hits every configuration alike."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

ROUND_ROBIN = "medians of sequential calls, every configuration in turn (round robin)."


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def interleaved(
    configs: dict[str, Callable[[], Awaitable[object]]], n: int, warm: int = 50
) -> dict[str, list[float]]:
    """Each config's call timed `n` times, round robin, so drift hits all alike."""
    for call in configs.values():
        for _ in range(warm):
            await call()
    samples: dict[str, list[float]] = {label: [] for label in configs}
    for _ in range(n):
        for label, call in configs.items():
            samples[label].append(await timed(call))
    return samples


def mean_us(fn: Callable[[], object], n: int) -> float:
    """The mean of `n` calls of a synchronous `fn`, in µs: too short to time one by one."""
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6

"""The garbage collector during a replay: young objects collected less often.

A replay allocates a few objects per event (rows, events, notifications), all
garbage within a few pages. With the default first threshold (700) the
collector ran every few dozen events and re-walked the pages in flight each
time: over a third of a replay's time (bench/replay.py, 200,000 events:
36,000 → 58,000 events/s with it raised to 50,000; at 250,000 a million-event
replay collects about once). Nothing a build holds forms cycles.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_REPLAY_GC_THRESHOLD = 250_000


class _Builds:
    """How many builds run now, and the threshold to restore when the last one ends."""

    running = 0
    threshold_before = gc.get_threshold()


@contextlib.contextmanager
def young_objects_collected_less_often() -> Iterator[None]:
    """The collector's first threshold raised while any build runs (builds may overlap)."""
    if _Builds.running == 0:
        _Builds.threshold_before = before = gc.get_threshold()
        gc.set_threshold(max(_REPLAY_GC_THRESHOLD, before[0]), *before[1:])
    _Builds.running += 1
    try:
        yield
    finally:
        _Builds.running -= 1
        if _Builds.running == 0:
            gc.set_threshold(*_Builds.threshold_before)

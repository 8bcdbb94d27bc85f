"""CPU time of the processes in a run, from their own counters (psutil), before and after.

CPU per command holds steadier than wall time on a machine shared with other
engineers: another process's load slows a run down but does not add to the
counters of the processes we watch.
"""

from __future__ import annotations

from collections.abc import Mapping

import psutil  # type: ignore[import-untyped]


def _own(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _with_children(proc: psutil.Process) -> float:
    """The process, the children it already reaped, and the children still alive.

    PostgreSQL runs a backend per connection, forked from the postmaster; a
    backend that exits during the run is then in the postmaster's
    `children_user`/`children_system`, one still serving is counted alive.
    """
    times = proc.cpu_times()
    total = float(times.user + times.system + times.children_user + times.children_system)
    for child in proc.children(recursive=True):
        try:
            total += _own(child)
        except psutil.NoSuchProcess:
            # Exited between the listing and the read: the postmaster counts it now
            # or at the next reading, never both.
            continue
    return total


class CpuMeter:
    """Named processes whose CPU seconds a run reads before and after.

    `with_children` names the processes whose children do their work (the
    postmaster). A process that is gone reads as what it last read.
    """

    def __init__(self, pids: Mapping[str, int | None], with_children: frozenset[str]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid}
        self._with_children = with_children
        self._last: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        for name, proc in self._procs.items():
            try:
                reading = _with_children(proc) if name in self._with_children else _own(proc)
            except psutil.NoSuchProcess:
                continue
            self._last[name] = reading
        return dict(self._last)


def per_command_us(
    before: Mapping[str, float], after: Mapping[str, float], commands: int
) -> dict[str, float]:
    """Each process's CPU between two readings, in µs per command."""
    return {name: (after[name] - before[name]) / commands * 1e6 for name in after if name in before}

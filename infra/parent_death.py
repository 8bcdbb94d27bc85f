"""Children that die with us: Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``).

The embedded servers run in sessions of their own, so that a Ctrl-C meant for
us does not reach them before we have stopped in order. That also means
nothing tells them when we die without stopping them (SIGKILL, the OOM killer).
``die_with_parent(sig)`` gives ``subprocess.Popen`` a ``preexec_fn`` that asks
the kernel to send the child ``sig`` when we are gone, however we went.

Two rules, or the signal comes at the wrong time or never:

- The kernel's "parent" is the *thread* that forked the child: spawn from a
  thread that lives as long as the process (the event loop's), never from a
  worker thread of ``asyncio.to_thread``, whose end would kill the child.
- The setting is cleared when the child changes its credentials: it is set in
  ``preexec_fn``, which ``subprocess`` runs after ``user=``'s setuid.

Elsewhere than on Linux it returns None (no such signal): the next start on the
same state folder still stops a server left behind (``infra/embedded.py``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``Popen``: the child gets ``sig`` when this thread ends."""
    if not sys.platform.startswith("linux"):
        return None
    # Looked up here, in the parent: the child between fork and exec should do
    # as little as it can (no library loading, no imports).
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        if prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            os._exit(127)  # better no server than one that would outlive us unnoticed
        # We may have died between the fork and the prctl: no signal would come.
        if os.getppid() != parent:
            os._exit(127)

    return set_parent_death_signal

"""Which kind of attempt an operation is: the one place that maps ops to attempt types.

initial: a first link or registration; sync: reading data through an existing
link; reconnect: repairing a link (update-mode link, relink, reconnect flows).
An op nobody mapped yet counts as `sync`, the kind most calls are.
"""

from __future__ import annotations

import functools
from typing import Literal

AttemptType = Literal["initial", "sync", "reconnect"]

_RECONNECT_MARKERS = ("reconnect", "relink", "update_mode", "update-mode", "reauth")
_INITIAL_PREFIXES = ("link.", "connection.register")


@functools.cache  # a handful of ops, asked once per attempt on replay
def attempt_type(op: str) -> AttemptType:
    """`link.create` → initial, `link.update_mode` → reconnect, `sync.transactions` → sync."""
    if any(marker in op for marker in _RECONNECT_MARKERS):
        return "reconnect"
    if op.startswith(_INITIAL_PREFIXES):
        return "initial"
    return "sync"

"""Bitso's request signing: `Authorization: Bitso <key>:<nonce>:<signature>`.

The signature is the hex HMAC-SHA256, keyed by the API secret, of
nonce + HTTP method + request path (with its query string) + JSON body,
concatenated as they go on the wire. The nonce must grow with every call
made with the same key, or Bitso answers 0207 (invalid nonce value).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable


def signature(secret: str, nonce: str, method: str, path_qs: str, body: str = "") -> str:
    """The hex HMAC-SHA256 Bitso expects for one request."""
    message = f"{nonce}{method.upper()}{path_qs}{body}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def authorization(
    key: str, secret: str, nonce: str, *, method: str, path_qs: str, body: str = ""
) -> str:
    """The value of the Authorization header for one signed request."""
    return f"Bitso {key}:{nonce}:{signature(secret, nonce, method, path_qs, body)}"


class NonceSource:
    """Strictly increasing nonces: microseconds since the epoch, bumped on ties.

    Microseconds rather than Bitso's suggested milliseconds, so two calls in the
    same millisecond from one process still get increasing nonces; calls from
    several processes sharing one key can still collide (Bitso answers 0207, which
    is retryable: the next call carries a fresh nonce).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0
        # Adapters are shared between tasks and, in benchmarks, threads.
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(int(self._clock() * 1_000_000), self._last + 1)
            return str(self._last)

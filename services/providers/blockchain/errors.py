"""An Esplora-style chain reader's failures in our taxonomy, by HTTP status.

Esplora answers errors as plain text ("Invalid Bitcoin address", "Too Many
Requests"), so the status is the code and the text only lends its message.
A public reader fails like any shared web service: rate limits and 5xx
under load; it has no maintenance windows of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.providers.base import ProviderCallError
from services.providers.http import ErrorRule, scrub, status_fallback

_DOWN = ErrorRule("provider_down", True)

CHAIN_ERRORS: Mapping[int, tuple[str, ErrorRule]] = {
    # An address or txid the reader rejects is as invalid at any other reader.
    400: ("INVALID_REQUEST", ErrorRule("validation", False, failover_helps=False)),
    # Our cursor's transaction is gone (a reorg dropped it): start the walk over.
    404: ("NOT_FOUND", ErrorRule("validation", False, failover_helps=False)),
    # A gated reader refusing our key: another reader does not need it.
    401: ("UNAUTHORIZED", ErrorRule("auth", False, failover_helps=True, blame="provider")),
    403: ("FORBIDDEN", ErrorRule("auth", False, failover_helps=True, blame="provider")),
    429: ("RATE_LIMITED", ErrorRule("rate_limit", True)),
    500: ("INTERNAL_ERROR", _DOWN),
    502: ("BAD_GATEWAY", _DOWN),
    # Esplora answers 503 while its index is still catching up with the chain.
    503: ("SERVICE_UNAVAILABLE", _DOWN),
    504: ("GATEWAY_TIMEOUT", _DOWN),
}


def _printable(body: bytes) -> str:
    text = body[:500].decode("utf-8", errors="replace")
    return "".join(c for c in text if c.isprintable()).strip()


def chain_error(
    http_status: int,
    body: bytes,
    *,
    provider: str = "blockchain",
    retry_after_s: float | None = None,
    secrets: tuple[str, ...] = (),
    endpoint: str = "chain",
) -> ProviderCallError:
    """Classify a chain reader's error reply; the address is masked in the message."""
    code, rule = CHAIN_ERRORS.get(http_status) or status_fallback(http_status)
    detail = _printable(body) or f"HTTP {http_status}"
    return rule.error(
        provider,
        code,
        scrub(f"{endpoint}: {detail}", *secrets),
        http_status=http_status,
        retry_after_s=retry_after_s,
    )

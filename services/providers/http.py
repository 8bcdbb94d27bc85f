"""HTTP plumbing shared by the adapters: one call under a deadline, failures classified.

Everything that goes wrong below the provider's own error body (timeouts,
refused connections, bodies that are not the JSON we expect) becomes a
`ProviderCallError` here, so adapters only ever map their provider's errors.
Messages name an endpoint *template*, never the URL: MX puts the user guid,
its access token, in the path.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import msgspec

from events.errors import Blame, ErrorInfo, ErrorType, default_blame
from services.providers.base import FAILOVER_TYPES, ProviderCallError

T = TypeVar("T")

_MAX_MESSAGE_CHARS = 300
_MIN_SECRET_CHARS = 6

# The most of a provider's response body we read: more is a broken or hostile
# answer, refused as `invalid_response` before it can fill the memory. An adapter
# whose provider legitimately sends more passes its own `max_body_bytes`.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
_READ_CHUNK_BYTES = 64 * 1024

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Set around a saga step's provider calls (a context variable, not a parameter
# of every port method: the key belongs to the step, whichever adapter and
# endpoint it reaches, and the orchestrator between them need not know it).
_idempotency_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "idempotency_key", default=None
)


@contextlib.contextmanager
def idempotency_key(key: str) -> Iterator[None]:
    """Send `Idempotency-Key: key` with every provider request made inside the block."""
    token = _idempotency_key.set(key)
    try:
        yield
    finally:
        _idempotency_key.reset(token)


@dataclass(frozen=True, slots=True, init=False)
class ErrorRule:
    """How one provider error code is handled: its class, and what can fix it.

    `failover_helps` (a link at another provider can serve the call) follows
    the type (`FAILOVER_TYPES`) unless the row says otherwise: the bank's own
    maintenance reaches every provider, while our credentials at one provider
    are of no concern to another. `blame` (whose failure it is, so whose health
    it counts against) follows the type (`default_blame`) unless the row says.

    Each row answers three questions: does trying again here help
    (`retryable`)? does only the person fix it (`reauth_required`)? can a link
    at another provider serve the call (`failover_helps`)? `restarts_pagination`
    marks an error after which the provider wants a walk of pages redone from
    its first cursor, so no page of it may be kept.
    """

    type: ErrorType
    retryable: bool
    reauth_required: bool
    failover_helps: bool
    blame: Blame
    restarts_pagination: bool

    def __init__(
        self,
        type: ErrorType,
        retryable: bool,
        reauth_required: bool = False,
        *,
        failover_helps: bool | None = None,
        blame: Blame | None = None,
        restarts_pagination: bool = False,
    ) -> None:
        # A frozen dataclass sets its fields through object.__setattr__.
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "retryable", retryable)
        object.__setattr__(self, "reauth_required", reauth_required)
        helps = type in FAILOVER_TYPES if failover_helps is None else failover_helps
        object.__setattr__(self, "failover_helps", helps)
        object.__setattr__(self, "blame", default_blame(type) if blame is None else blame)
        object.__setattr__(self, "restarts_pagination", restarts_pagination)

    def error(
        self,
        provider: str,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> ProviderCallError:
        """The failure this rule classifies, as the port raises it.

        `message` goes out as given: a provider's own text must pass through
        `scrub` first.
        """
        return ProviderCallError(
            ErrorInfo(
                code=code,
                message=message,
                type=self.type,
                retryable=self.retryable,
                provider=provider,
                blame=self.blame,
            ),
            http_status=http_status,
            retry_after_s=retry_after_s,
            reauth_required=self.reauth_required,
            failover_helps=self.failover_helps,
            restarts_pagination=self.restarts_pagination,
        )


# What a code no table knows gets: no retry, no failover.
UNKNOWN_RULE = ErrorRule("unknown", False)
# Input an adapter refuses before calling out (a cursor or token that is not
# its own): as wrong at any other provider, and again on a retry.
INVALID_INPUT = ErrorRule("validation", False)
_RATE_LIMITED = ErrorRule("rate_limit", True)
_PROVIDER_DOWN = ErrorRule("provider_down", True)
_NETWORK = ErrorRule("network", True)
# Retryable: a garbled body is usually a transient proxy or deploy hiccup,
# and one at this provider's edge that another provider does not share.
_INVALID_RESPONSE = ErrorRule("unknown", True, failover_helps=True)


class HttpReply(msgspec.Struct, frozen=True, kw_only=True):
    """A response read in full: its status, raw body and any Retry-After hint."""

    status: int
    body: bytes
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    provider: str,
    endpoint: str,
    timeout_s: float,
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_body_bytes: int = MAX_RESPONSE_BYTES,
) -> HttpReply:
    """Make one request and read its whole body within `timeout_s`.

    Raises ProviderCallError(type="network") for timeouts and connection
    failures, and `invalid_response` for a body cut off in transit or larger
    than `max_body_bytes` (refused on its Content-Length, or as soon as the
    bytes read pass the cap: never held in full).
    """
    all_headers = {"Accept": "application/json", **(headers or {})}
    key = _idempotency_key.get()
    if key is not None:
        all_headers[IDEMPOTENCY_HEADER] = key
    data: bytes | None = None
    if json_body is not None:
        data = msgspec.json.encode(json_body)
        all_headers["Content-Type"] = "application/json"
    try:
        async with session.request(
            method,
            url,
            data=data,
            params=params,
            headers=all_headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            body = await _read_capped(response, max_body_bytes, provider, endpoint)
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return HttpReply(status=response.status, body=body, retry_after_s=retry_after)
    # `from None`: aiohttp's exceptions carry the request URL, which may hold a token.
    except TimeoutError:
        raise network_error(
            provider, endpoint, "timeout", f"no answer within {timeout_s:g}s"
        ) from None
    except aiohttp.ClientPayloadError:
        raise invalid_response(provider, endpoint, None, "body cut off in transit") from None
    except (aiohttp.ClientError, OSError) as exc:
        kind = type(exc).__name__
        raise network_error(
            provider, endpoint, "network_error", f"{kind} talking to provider"
        ) from None


async def _read_capped(
    response: aiohttp.ClientResponse, limit: int, provider: str, endpoint: str
) -> bytes:
    """The body, read in chunks, refused as soon as it is known to exceed `limit` bytes."""

    def too_large() -> ProviderCallError:
        return invalid_response(
            provider, endpoint, response.status, f"body larger than {limit} bytes"
        )

    if response.content_length is not None and response.content_length > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(_READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(reply: HttpReply, type_: type[T], *, provider: str, endpoint: str) -> T:
    """Decode and validate a body against the provider's documented shape."""
    try:
        return msgspec.json.decode(reply.body, type=type_)
    except msgspec.DecodeError as exc:
        # A validation message names the field path only, never a value.
        detail = str(exc) if isinstance(exc, msgspec.ValidationError) else "body is not valid JSON"
        raise invalid_response(provider, endpoint, reply.status, detail) from None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def status_fallback(status: int) -> tuple[str, ErrorRule]:
    """Code and rule for an error status whose body says nothing usable."""
    if status == 429:
        return f"http_{status}", _RATE_LIMITED
    if status >= 500:
        return f"http_{status}", _PROVIDER_DOWN
    return f"http_{status}", UNKNOWN_RULE


def error_without_body(provider: str, endpoint: str, reply: HttpReply) -> ProviderCallError:
    """Classify a non-2xx reply whose body is not the provider's error shape.

    A gateway's HTML page on a 5xx or 429 still says what happened; anything
    else is a reply we cannot interpret.
    """
    code, rule = status_fallback(reply.status)
    if rule.type == "unknown":
        return invalid_response(provider, endpoint, reply.status, "unrecognised error body")
    return rule.error(
        provider,
        code,
        f"{endpoint} answered HTTP {reply.status}",
        http_status=reply.status,
        retry_after_s=reply.retry_after_s,
    )


def network_error(provider: str, endpoint: str, code: str, detail: str) -> ProviderCallError:
    return _NETWORK.error(provider, code, f"{endpoint}: {detail}")


def invalid_response(
    provider: str, endpoint: str, http_status: int | None, detail: str
) -> ProviderCallError:
    return _INVALID_RESPONSE.error(
        provider, "invalid_response", f"{endpoint}: {detail}", http_status=http_status
    )


def scrub(message: str, *secrets: str) -> str:
    """A provider's message made safe to log: known secrets masked, length bounded."""
    for secret in secrets:
        # Masking a very short value would garble the message and protect nothing.
        if len(secret) >= _MIN_SECRET_CHARS:
            message = message.replace(secret, "***")
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 1] + "…"
    return message

"""Who may call the HTTP API: bearer tokens, their roles and spaces, and each route's rule.

A token is configured as `NAME:ROLE:SPACES:TOKEN` (SPACES: `space1|space2`, or `*`
for every space). Only its SHA-256 is kept: `ApiToken` never holds the token, so
no setting, repr or log line can show it. A presented token is hashed and
compared with every configured digest in constant time.

`ACCESS` gives each route (method, path template) its roles and how it is
scoped to a space; `authorise` is the middleware that applies it. A route the
app serves without a rule is refused (fail closed), and a test keeps every
served route ruled.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Literal

import msgspec
from aiohttp import web

from infra.http.context import json_response
from infra.http.responses import ApiError, ErrorDetail

log = logging.getLogger(__name__)

ALL_SPACES = "*"
# Shorter tokens are guessable; a generated one (secrets.token_urlsafe(32)) has 43 characters.
MIN_TOKEN_LENGTH = 16
REALM = "syncyard"


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    AUDITOR = "auditor"


class TokenSpecError(ValueError):
    """A token entry syncyard cannot use; the message names the entry, never its token."""


class ApiToken(msgspec.Struct, frozen=True, kw_only=True):
    """One configured token: its name (for logs), role, spaces, and the SHA-256 of the token."""

    name: str
    role: Role
    spaces: frozenset[str] | None  # None: every space
    digest: bytes

    def sees(self, space_id: str) -> bool:
        return self.spaces is None or space_id in self.spaces


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_token_entry(entry: str, where: str) -> ApiToken:
    """`NAME:ROLE:SPACES:TOKEN`; the token may itself hold ':' (it is the rest)."""
    parts = entry.strip().split(":", 3)
    if len(parts) != 4:
        raise TokenSpecError(f"{where}: write NAME:ROLE:SPACES:TOKEN (SPACES: a|b or *)")
    name, role, spaces, token = (p.strip() for p in parts)
    if not name:
        raise TokenSpecError(f"{where}: the token needs a name")
    if role not in Role.__members__.values():
        roles = ", ".join(r.value for r in Role)
        raise TokenSpecError(f"{where} ({name}): role must be one of {roles}, got {role!r}")
    space_set = frozenset(s.strip() for s in spaces.split("|") if s.strip())
    if not space_set:
        raise TokenSpecError(f"{where} ({name}): name its spaces (a|b) or * for every space")
    if ALL_SPACES in space_set and len(space_set) > 1:
        raise TokenSpecError(f"{where} ({name}): * means every space; list no others with it")
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenSpecError(f"{where} ({name}): the token must be {MIN_TOKEN_LENGTH}+ characters")
    return ApiToken(
        name=name,
        role=Role(role),
        spaces=None if ALL_SPACES in space_set else space_set,
        digest=digest_of(token),
    )


def parse_tokens(entries: Iterable[tuple[str, str]]) -> tuple[ApiToken, ...]:
    """(where, entry) pairs → tokens; names and tokens must each be unique."""
    tokens = tuple(parse_token_entry(entry, where) for where, entry in entries)
    names = [t.name for t in tokens]
    if len(set(names)) != len(names):
        raise TokenSpecError(f"API token names must be unique: {sorted(names)}")
    if len({t.digest for t in tokens}) != len(tokens):
        # Two entries with one token would make its role depend on their order.
        raise TokenSpecError("two API token entries share one token: give each its own")
    return tokens


def tokens_from_env(spec: str) -> list[tuple[str, str]]:
    """`SYNCYARD_API_TOKENS`: entries separated by commas or newlines."""
    raw = [e.strip() for line in spec.splitlines() for e in line.split(",")]
    return [(f"SYNCYARD_API_TOKENS entry {i}", e) for i, e in enumerate(filter(None, raw), 1)]


def tokens_from_file(path: Path) -> list[tuple[str, str]]:
    """`SYNCYARD_API_TOKENS_FILE`: one entry a line; blank lines and `#` comments skipped."""
    lines = path.read_text().splitlines()
    return [
        (f"{path}:{n}", line.strip())
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#")
    ]


def local_admin(token: str) -> ApiToken:
    """The token `syncyard up` makes for its own machine: admin of every space."""
    return ApiToken(name="local-admin", role=Role.ADMIN, spaces=None, digest=digest_of(token))


class TokenBook:
    """The configured tokens, looked up by a presented token in constant time."""

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self.tokens = tuple(tokens)
        if not self.tokens:
            raise ValueError("the HTTP API needs at least one token: it never serves open")

    def find(self, presented: str) -> ApiToken | None:
        digest = digest_of(presented)
        found = None
        # Every digest is compared, match or not: the time taken says nothing about
        # which token (or how much of one) matched.
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


# How a route is scoped to the caller's spaces:
#   open      no token (liveness, readiness, providers' signed webhooks)
#   space     the `space_id` query parameter is required and must be one of the token's
#   saga      the handler checks the saga's own space (it is known only once loaded)
#   listing   the handler lists only rows of the token's spaces
#   provider  provider-wide figures: no per-space rows to filter
#   fleet     counts over every space: only a token for every space (`*`)
#   none      no data of any space (the API's descriptions)
Scope = Literal["open", "space", "saga", "listing", "provider", "fleet", "none"]

READERS = frozenset({Role.VIEWER, Role.OPERATOR, Role.ADMIN})
AUDITORS = READERS | {Role.AUDITOR}
OPERATORS = frozenset({Role.OPERATOR, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})


class Access(msgspec.Struct, frozen=True):
    roles: frozenset[Role]
    scope: Scope


OPEN = Access(frozenset(), "open")

RouteKey = tuple[str, str]  # (lowercase method, path template), as in openapi.py

# The route x role table; README.md "Authentication" writes it out for people.
ACCESS: dict[RouteKey, Access] = {
    ("get", "/healthz"): OPEN,
    ("get", "/readyz"): OPEN,
    ("get", "/v1/openapi.json"): Access(READERS, "none"),
    ("get", "/v1/asyncapi.json"): Access(READERS, "none"),
    ("get", "/v1/providers/health"): Access(READERS, "provider"),
    ("get", "/v1/providers/reliability"): Access(READERS, "provider"),
    ("get", "/v1/providers/failover-rates"): Access(READERS, "provider"),
    ("get", "/v1/breakers"): Access(READERS, "provider"),
    # A hold stops or lets through every space's calls: only an operator of every space.
    ("post", "/v1/breakers/force"): Access(OPERATORS, "fleet"),
    ("post", "/v1/breakers/release"): Access(OPERATORS, "fleet"),
    ("get", "/v1/connections/{account_id}/history"): Access(AUDITORS, "space"),
    ("get", "/v1/connections/{account_id}/status"): Access(READERS, "space"),
    ("get", "/v1/connections/{account_id}/syncs"): Access(READERS, "space"),
    ("get", "/v1/connections/{account_id}/reliability"): Access(READERS, "space"),
    ("get", "/v1/accounts/{account_id}/transactions/changes"): Access(READERS, "space"),
    ("post", "/v1/accounts/{account_id}/manual-entries/{ledger_id}"): Access(OPERATORS, "space"),
    ("get", "/v1/admin/stats"): Access(ADMINS, "provider"),
    ("get", "/v1/metrics/overview"): Access(READERS, "fleet"),
    ("get", "/v1/sagas"): Access(AUDITORS, "listing"),
    ("get", "/v1/sagas/{saga_id}"): Access(AUDITORS, "saga"),
    ("get", "/v1/sagas/{saga_id}/link"): Access(OPERATORS, "saga"),
    ("post", "/v1/sagas/{saga_id}/webhook"): OPEN,
    ("post", "/v1/webhooks/{provider}"): OPEN,
}

TOKENS: web.AppKey[TokenBook] = web.AppKey("api_tokens", TokenBook)
ACCESS_RULES: web.AppKey[dict[RouteKey, Access]] = web.AppKey("access_rules")
CALLER: web.RequestKey[ApiToken] = web.RequestKey("caller", ApiToken)


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    response = json_response(ApiError(error=ErrorDetail(code=code, message=message)), status)
    response.headers.update(headers)
    return response


def unauthorised(message: str, *, invalid: bool = False) -> web.Response:
    challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if invalid else "")
    return _error(401, "unauthorised", message, **{"WWW-Authenticate": challenge})


def forbidden(message: str) -> web.Response:
    return _error(403, "forbidden", message)


def _route_key(request: web.Request) -> RouteKey | None:
    if request.match_info.http_exception is not None:
        return None  # nothing matched: aiohttp's own 404 or 405 answers
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return None
    method = "get" if route.method == "HEAD" else route.method.lower()  # HEAD rides on GET
    return method, resource.canonical


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def space_refusal(caller: ApiToken, space_id: str) -> web.Response | None:
    """A 403 when the caller's token does not reach `space_id`; None when it does."""
    if caller.sees(space_id):
        return None
    return forbidden(f"this token does not reach space {space_id!r}")


def _refusal(
    request: web.Request, key: RouteKey, access: Access, caller: ApiToken
) -> web.Response | None:
    """A 403 (or the 400 of a missing space) for a known caller; None when it may go on."""
    if caller.role not in access.roles:
        return forbidden(f"role {caller.role.value} may not call {key[0].upper()} {key[1]}")
    if access.scope == "fleet" and caller.spaces is not None:
        return forbidden("these figures count every space: they need a token for every space (*)")
    if access.scope == "space":
        space_id = request.query.get("space_id")
        if not space_id:
            return _error(400, "bad_request", "space_id is required: account routes are per space")
        return space_refusal(caller, space_id)
    return None


def _caller(request: web.Request, key: RouteKey, access: Access) -> ApiToken | web.Response:
    """The token's holder, or the 401/403/400 that turns them away."""
    presented = _bearer(request)
    if presented is None:
        return unauthorised("send Authorization: Bearer <token>")
    caller = request.app[TOKENS].find(presented)
    if caller is None:
        return unauthorised("unknown token", invalid=True)
    return _refusal(request, key, access, caller) or caller


@web.middleware
async def authorise(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    key = _route_key(request)
    if key is None:
        return await handler(request)
    access = request.app[ACCESS_RULES].get(key)
    if access is None:
        # A route added without a rule stays shut until someone decides who may call it.
        log.error("route %s %s has no access rule: refused", key[0].upper(), key[1])
        return forbidden("this route has no access rule yet")
    if access.scope == "open":
        return await handler(request)
    caller = _caller(request, key, access)
    if isinstance(caller, web.Response):
        return caller
    request[CALLER] = caller
    return await handler(request)

"""HTTP routes that hold a breaker open or closed, and release it: for operators.

Each request becomes a `breaker.force` / `breaker.release` command run by this
process, so the hold is the same audited event as one sent over NATS; the
actor recorded is the caller's token name, never what the body claims.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from events.base import Identifier, ProviderName, Region
from events.commands import Command, ForceBreaker, Reason, ReleaseBreaker
from events.results import CommandResult
from infra.http.auth import CALLER
from infra.http.context import bad_request, json_response
from infra.http.openapi import Operation, OperationKey

Execute = Callable[[Command], Awaitable[CommandResult]]
# Holds are not any one space's: the commands carry a fixed one.
OPERATORS_SPACE = "operators"


class _Hold(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider: ProviderName
    region: Region = "US"
    institution_id: Identifier | None = None
    state: Literal["open", "closed"]
    duration_s: Annotated[float, msgspec.Meta(gt=0, le=7 * 86_400)]
    reason: Reason


class _Release(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider: ProviderName
    region: Region = "US"
    institution_id: Identifier | None = None
    reason: Reason


def breaker_routes(execute: Execute) -> list[web.RouteDef]:
    def holding(
        body: type[_Hold] | type[_Release], command: type[ForceBreaker] | type[ReleaseBreaker]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A route that turns its body into the breaker command, the caller as its actor."""

        async def handle(request: web.Request) -> web.Response:
            try:
                ask = msgspec.json.decode(await request.read(), type=body)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return bad_request(str(exc))
            cmd = command(
                command_id=f"{command.op.replace('.', '-')}-{uuid.uuid4()}",
                space_id=OPERATORS_SPACE,
                actor=request[CALLER].name,
                **msgspec.structs.asdict(ask),
            )
            return _answer(await execute(cmd))

        return handle

    return [
        web.post("/v1/breakers/force", holding(_Hold, ForceBreaker)),
        web.post("/v1/breakers/release", holding(_Release, ReleaseBreaker)),
    ]


def _answer(result: CommandResult) -> web.Response:
    return json_response(result, status=200 if result.success else 400)


_RESULT = {
    "description": "The command's result: `data` is the breaker after it (state, hold, expiry)",
    "content": {"application/json": {"schema": {"type": "object"}}},
}
_BODY_FIELDS = {
    "provider": {"type": "string"},
    "region": {"type": "string", "default": "US"},
    "institution_id": {"type": ["string", "null"], "description": "absent: provider-wide"},
    "reason": {"type": "string", "minLength": 1, "maxLength": 500},
}

BREAKER_OPERATIONS: dict[OperationKey, Operation] = {
    ("post", "/v1/breakers/force"): {
        "summary": "Hold a breaker open (no calls) or closed (calls whatever fails) for "
        "`duration_s`, as the `breaker.force` command: recorded in the breaker's stream with "
        "the caller's token name and the reason",
        "parameters": [],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["provider", "state", "duration_s", "reason"],
                        "properties": {
                            **_BODY_FIELDS,
                            "state": {"type": "string", "enum": ["open", "closed"]},
                            "duration_s": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": 604_800,
                            },
                        },
                    }
                }
            },
        },
        "responses": {"200": _RESULT, "400": {"description": "A bad body or provider"}},
    },
    ("post", "/v1/breakers/release"): {
        "summary": "End a hold (or close an open breaker with a fresh count), as the "
        "`breaker.release` command",
        "parameters": [],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["provider", "reason"],
                        "properties": _BODY_FIELDS,
                    }
                }
            },
        },
        "responses": {"200": _RESULT, "400": {"description": "A bad body"}},
    },
}

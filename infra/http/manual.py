"""`POST /v1/accounts/{account_id}/manual-entries/{ledger_id}`: record a person's own entries.

The manual provider reads a ledger (a manual link's item id) that nobody
else holds, so the writes come here: an operator (or admin) of the account's
space, typically the person's app backend, sends accounts, entries and
deletions. The ledger belongs to the account it was opened for (the link flow
opens it for the account it links; a ledger named first here is opened for
this account), and another account's ledger answers 404 as if it did not exist.
The next `sync.transactions` of a connection holding the link brings the
changes into the feed, as any provider's would.

An HTTP route rather than a NATS command: the write calls no provider, so the
worker's retries, deferrals and failover have nothing to do, and the API
already scopes a token to its spaces. Sending the same entries again records
nothing new, so a retried request is safe.

Bounded twice: a request holds at most `MAX_ITEMS` accounts, entries and
deletions each (and aiohttp's 1 MiB of body), and a ledger at most its
`LedgerLimits` (100 accounts, 10,000 live entries, 100,000 changes); a write
past one is refused whole: 400, or 409 `ledger_full`.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web

from infra.http.auth import CALLER
from infra.http.context import bad_request, json_response
from infra.http.openapi import ACCOUNT, SPACE, Operation, OperationKey
from infra.http.responses import ApiError, ErrorDetail
from infra.manual_entries import (
    LedgerFullError,
    LedgerLimits,
    LedgerOwnedElsewhereError,
    ManualEntriesRecorded,
    PostgresManualEntries,
)
from services.connections.state import pair_key
from services.providers.manual.store import ManualAccount, ManualEntry

log = logging.getLogger(__name__)

PATH = "/v1/accounts/{account_id}/manual-entries/{ledger_id}"
MAX_ITEMS = 1000  # per request: a person's app sends what changed, not years at once


class ManualEntriesWrite(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Accounts to create or update, entries to add or edit (by `entry_id`), ids to delete."""

    accounts: list[ManualAccount] = []
    entries: list[ManualEntry] = []
    deleted: list[str] = []


_decoder = msgspec.json.Decoder(ManualEntriesWrite)


def manual_routes(store: PostgresManualEntries) -> list[web.RouteDef]:
    async def record(request: web.Request) -> web.Response:
        space_id = request.query["space_id"]  # `authorise` refused a request without it
        account_id, ledger_id = request.match_info["account_id"], request.match_info["ledger_id"]
        try:
            write = _decoder.decode(await request.read())
        except msgspec.ValidationError as exc:
            return bad_request(f"body: {exc}")
        except msgspec.DecodeError:
            return bad_request("body: not JSON")
        if max(len(write.accounts), len(write.entries), len(write.deleted)) > MAX_ITEMS:
            return bad_request(
                f"body: at most {MAX_ITEMS} accounts, entries or deletions a request"
            )
        try:
            recorded = await store.record(
                ledger_id,
                pair_key(space_id, account_id),
                accounts=write.accounts,
                entries=write.entries,
                deleted=write.deleted,
            )
        except LedgerOwnedElsewhereError:
            log.warning("manual ledger write refused: the ledger belongs to another account")
            return web.json_response(
                {"error": {"code": "not_found", "message": "no such ledger for this account"}},
                status=404,
            )
        except LedgerFullError as exc:
            log.warning("manual ledger write refused: %s past its limit", exc.what)
            return json_response(
                ApiError(error=ErrorDetail(code="ledger_full", message=str(exc))), status=409
            )
        log.info("manual ledger: %d changes recorded by %s", recorded.changes, request[CALLER].name)
        return json_response(recorded)

    return [web.post(PATH, record)]


_LIMITS = LedgerLimits()
_LEDGER = {"name": "ledger_id", "in": "path", "required": True,
           "description": "The manual link's item id",
           "schema": {"type": "string", "minLength": 1, "maxLength": 128}}  # fmt: skip


def _schema(kind: type[Any]) -> dict[str, Any]:
    """A struct's JSON Schema, its definitions inline (OpenAPI 3.1 takes `$defs`)."""
    return msgspec.json.schema(kind)


MANUAL_OPERATIONS: dict[OperationKey, Operation] = {
    ("post", PATH): {
        "summary": "Record a person's own accounts and entries in a manual ledger (created "
        "for this account if new); the next sync of a connection linked to it brings them "
        "into the feed. Entries sent again unchanged record nothing",
        "parameters": [ACCOUNT, _LEDGER, SPACE],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _schema(ManualEntriesWrite)}},
        },
        "responses": {
            "200": {
                "description": "The ledger's head position after the write, and how many "
                "changes it added",
                "content": {"application/json": {"schema": _schema(ManualEntriesRecorded)}},
            },
            "400": {
                "description": f"A body that is not the shape above, or with more than "
                f"{MAX_ITEMS} accounts, entries or deletions"
            },
            "404": {"description": "The ledger belongs to another account"},
            "409": {
                "description": "`ledger_full`: the write would take the ledger past "
                f"{_LIMITS.accounts} accounts, {_LIMITS.entries} live entries or "
                f"{_LIMITS.changes} changes; nothing of it was recorded"
            },
            "413": {"description": "A body over 1 MiB"},
        },
    },
}

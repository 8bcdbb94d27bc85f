"""What the saga tests share: starting flows, playing the person, reading sagas back."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from events.commands import CompleteLink, StartLink
from infra.saga_store import PostgresSagaStore
from sagas.state import SagaState, saga_id_for
from tests.support.harness import Client, eventually
from tests.support.sandbox_admin import SandboxAdmin

SPACE = "space-1"


def start_link(account: str, command_id: str, **fields: Any) -> StartLink:
    return StartLink(command_id=command_id, space_id=SPACE, account_id=account, **fields)


def complete_link(account: str, link_command_id: str, public_token: str) -> CompleteLink:
    return CompleteLink(
        command_id=f"complete-{link_command_id}",
        space_id=SPACE,
        account_id=account,
        link_command_id=link_command_id,
        public_token=public_token,
    )


def saga_id(command_id: str) -> uuid.UUID:
    return saga_id_for(SPACE, command_id)


async def saga_reaches(
    store: PostgresSagaStore, command_id: str, accept: Any, timeout: float = 20.0
) -> SagaState:
    async def probe() -> SagaState | None:
        return await store.load(saga_id(command_id))

    found = await eventually(probe, lambda s: s is not None and accept(s), timeout)
    assert found is not None
    return found


async def saga_ended(store: PostgresSagaStore, command_id: str, timeout: float = 20.0) -> SagaState:
    return await saga_reaches(store, command_id, lambda s: s.finished, timeout)


async def link_token_of(
    store: PostgresSagaStore, command_id: str, step: str = "create_link"
) -> str:
    state = await saga_reaches(store, command_id, lambda s: step in s.outputs)
    return str(state.outputs[step]["link_token"])


async def sandbox_post(sandbox: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(sandbox + path, json=body) as resp:
        assert resp.status in (200, 201), await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def person_finishes(sandbox: str, provider: str, link_token: str) -> dict[str, Any]:
    """The sandbox plays the person: finishes the link UI and sends the provider's webhook."""
    async with aiohttp.ClientSession() as http:
        return await SandboxAdmin(http, sandbox).complete_link(provider, link_token)


async def idempotency(sandbox: str) -> dict[str, dict[str, dict[str, int]]]:
    async with aiohttp.ClientSession() as http, http.get(f"{sandbox}/_admin/idempotency") as r:
        report: dict[str, dict[str, dict[str, int]]] = await r.json()
        return report


def keys_for(
    report: dict[str, dict[str, dict[str, int]]], path: str, saga: uuid.UUID
) -> dict[str, dict[str, int]]:
    """The idempotency keys one saga used at `path`, with their effects and replays."""
    return {k: v for k, v in report.get(path, {}).items() if k.startswith(str(saga))}


async def start_and_complete(
    upstream: Client,
    store: PostgresSagaStore,
    sandbox: str,
    account: str,
    command_id: str,
    **fields: Any,
) -> SagaState:
    """A whole link flow through `link.complete`, without a webhook."""
    started = await upstream.send(start_link(account, command_id, **fields))
    assert started.success, started.error
    state = await saga_reaches(store, command_id, lambda s: "create_link" in s.outputs)
    provider = str(state.outputs["create_link"]["provider"])
    done = await person_finishes(sandbox, provider, str(state.outputs["create_link"]["link_token"]))
    reply = await upstream.send(complete_link(account, command_id, done["public_token"]))
    assert reply.success, reply.error
    return await saga_ended(store, command_id)

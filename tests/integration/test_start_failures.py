"""A start that fails halfway leaves nothing of itself running (infra/bootstrap.py)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from infra.bootstrap import open_runtime, run_components
from tests.support.harness import CIPHER_KEY, settings_for

pytestmark = pytest.mark.integration


def _running_components() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and task.get_coro().__qualname__ == "supervise"  # type: ignore[union-attr]
    ]


@pytest.mark.usefixtures("clean_jetstream")
async def test_an_api_port_taken_stops_the_components_already_started(
    sandbox: str, nats_url: str, database_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = settings_for(sandbox, http_port=taken.getsockname()[1], nats_url=nats_url)
        async with open_runtime(settings, nats_url, database_url, cipher_key=CIPHER_KEY) as rt:
            with pytest.raises(OSError, match="address already in use"):
                await run_components(rt, {"projector", "relay", "worker", "api"}, asyncio.Event())
            # The projector, the relay, the worker and its followers started before
            # the API: stopped and waited for, not left running on a closing pool.
            assert _running_components() == []

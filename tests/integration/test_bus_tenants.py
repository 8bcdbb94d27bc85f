"""Results per space (#14): every result is published again on its space's own subject, so
a tenant's upstream login may read its spaces' results alone; the subject every upstream
reads today keeps each result, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from events.codec import decode_result, encode
from events.subjects import HEADER_MSG_ID, command_msg_id, command_subject, rpc_subject
from infra.embedded import EmbeddedNats
from infra.nats_roles import roles
from tests.support import bus
from tests.support.harness import (
    client,
    eventually,
    register,
    running_syncyard,
    settings_for,
)

pytestmark = pytest.mark.integration

TENANT = "upstream_acme"
TABLE = roles(tenants={"acme": ("acme.eu",)})


@pytest.fixture
async def tenant_nats(tmp_path: Path) -> AsyncIterator[str]:
    """A NATS with syncyard's roles and one tenant, `acme`, whose one space is `acme.eu`."""
    async with EmbeddedNats(tmp_path, table=TABLE) as server:
        bus.register(server.url, server.credentials)
        yield server.url


async def test_a_tenant_reads_its_own_space_s_results_and_no_other_s(
    tenant_nats: str, sandbox: str, database_url: str
) -> None:
    credential = bus.credentials(tenant_nats)[TENANT]
    assert credential.password_file is not None
    errors: list[str] = []

    async def collect(error: Exception) -> None:
        errors.append(str(error).lower())

    own = register("acct-tenant", "plaid", "tenant-1", space_id="acme.eu")
    other = register("acct-tenant", "plaid", "tenant-1", space_id="globex")
    async with (
        running_syncyard(settings_for(sandbox), tenant_nats, database_url),
        client(tenant_nats) as upstream,
    ):
        tenant = await nats.connect(
            tenant_nats,
            user=credential.user,
            password=credential.password_file.read_text().strip(),
            inbox_prefix=TABLE[TENANT].inbox_prefix,
            error_cb=collect,
        )
        try:
            seen: list[Any] = []

            async def on_result(msg: Any) -> None:
                seen.append(msg)

            await tenant.subscribe("syncyard.space.acme%2Eeu.result.>", cb=on_result)
            await tenant.subscribe("syncyard.result.>", cb=on_result)  # refused
            await tenant.flush()
            js = tenant.jetstream()
            for cmd in (other, own):  # it may send for any space: it reads its own alone
                await js.publish(
                    command_subject(cmd.op),
                    encode(cmd),
                    headers={HEADER_MSG_ID: command_msg_id(cmd.space_id, cmd.command_id)},
                )
            assert (await upstream.result_in("acme.eu", "tenant-1")).success
            assert (await upstream.result_in("globex", "tenant-1")).success
            with pytest.raises(nats.errors.Error):  # no RPC: its answer would name any space
                await tenant.request(rpc_subject(own.op), encode(own), timeout=1)
            await eventually(lambda: asyncio.sleep(0, len(seen)), lambda n: n >= 1)
            await tenant.flush()
        finally:
            await tenant.close()

        # Every upstream reading syncyard.result.> today gets each result once, as before.
        assert len(upstream.in_space[("globex", "tenant-1")]) == 1
        assert len(upstream.in_space[("acme.eu", "tenant-1")]) == 1

    assert [msg.subject for msg in seen] == ["syncyard.space.acme%2Eeu.result.connection.register"]
    assert decode_result(seen[0].data).command_id == "tenant-1"
    assert seen[0].headers["Syncyard-Space-Id"] == "acme.eu"
    assert any('permissions violation for subscription to "syncyard.result.>"' in e for e in errors)

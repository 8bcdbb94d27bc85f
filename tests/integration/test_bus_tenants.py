"""Tenants on the bus (#14): a tenant's login sends commands on its spaces' own subjects
alone, and reads its spaces' results alone; the worker runs a command sent on a space's
subject only for that space, and tells a refusal only to the space its subject names. The
shared upstream login keeps `syncyard.cmd.<op>` and every result on `syncyard.result.>`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from events.codec import decode_result, encode
from events.commands import Command, ForceBreaker
from events.subjects import (
    HEADER_MSG_ID,
    command_msg_id,
    command_subject,
    rpc_subject,
    space_command_subject,
)
from infra.embedded import EmbeddedNats
from infra.nats_roles import roles
from tests.support import bus
from tests.support.harness import (
    client,
    decode_json,
    eventually,
    register,
    running_syncyard,
    settings_for,
    stored_events,
    stream_messages,
    sync,
)

pytestmark = pytest.mark.integration

ACME, GLOBEX = "upstream_acme", "upstream_globex"
TABLE = roles(tenants={"acme": ("acme.eu",), "globex": ("globex",)})


@pytest.fixture
async def tenant_nats(tmp_path: Path) -> AsyncIterator[str]:
    """A NATS with syncyard's roles and two tenants: `acme` (space `acme.eu`) and
    `globex` (space `globex`)."""
    async with EmbeddedNats(tmp_path, table=TABLE) as server:
        bus.register(server.url, server.credentials)
        yield server.url


class Tenant:
    """A tenant's service: its login, the results it reads, the errors NATS tells it."""

    def __init__(self, nc: NatsClient, errors: list[str]) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.results: list[Any] = []
        self.errors = errors  # what nats-server said to this login, lower-cased

    async def on_result(self, msg: Any) -> None:
        self.results.append(msg)

    async def send(self, cmd: Command, subject: str | None = None) -> None:
        """Through JetStream, on `subject` (its space's own unless told), acked by the stream."""
        await self.js.publish(
            subject or space_command_subject(cmd.space_id, cmd.op),
            encode(cmd),
            headers={HEADER_MSG_ID: command_msg_id(cmd.space_id, cmd.command_id)},
        )

    def answered(self) -> list[str]:
        return [decode_result(msg.data).command_id for msg in self.results]

    async def refused_publish(self, subject: str) -> bool:
        """Whether nats-server said this login may not publish on `subject`."""
        await self.nc.flush()  # the server's -ERR for a publish comes before its PONG
        said = f'permissions violation for publish to "{subject}"'.lower()
        await eventually(lambda: asyncio.sleep(0, self.errors), lambda e: any(said in x for x in e))
        return True


async def tenant(url: str, role: str) -> Tenant:
    credential = bus.credentials(url)[role]
    assert credential.password_file is not None
    errors: list[str] = []

    async def collect(error: Exception) -> None:
        errors.append(str(error).lower())

    nc = await nats.connect(
        url,
        user=credential.user,
        password=credential.password_file.read_text().strip(),
        inbox_prefix=TABLE[role].inbox_prefix,
        error_cb=collect,
    )
    return Tenant(nc, errors)


async def test_a_tenant_sends_commands_on_its_own_space_s_subject_and_nowhere_else(
    tenant_nats: str, sandbox: str, database_url: str
) -> None:
    forged = register("acct-globex", "plaid", "forged-1", space_id="globex")
    forged_sync = sync("acct-globex", "forged-2", space_id="globex")
    own = register("acct-acme", "plaid", "acme-1", space_id="acme.eu")
    own_sync = sync("acct-acme", "acme-2", space_id="acme.eu")
    theirs = register("acct-globex", "plaid", "globex-1", space_id="globex")
    theirs_sync = sync("acct-globex", "globex-2", space_id="globex")
    async with (
        running_syncyard(settings_for(sandbox), tenant_nats, database_url),
        client(tenant_nats) as upstream,
    ):
        acme, globex = await tenant(tenant_nats, ACME), await tenant(tenant_nats, GLOBEX)
        try:
            await acme.nc.subscribe("syncyard.space.acme%2Eeu.result.>", cb=acme.on_result)
            await globex.nc.subscribe("syncyard.space.globex.result.>", cb=globex.on_result)
            await acme.nc.subscribe("syncyard.result.>", cb=acme.on_result)  # refused
            await acme.nc.flush()
            await globex.nc.flush()

            # Another space's command, on the subject that names no space or on globex's:
            # nats-server refuses both publishes, so neither reaches the queue.
            await acme.nc.publish(command_subject(forged.op), encode(forged))
            assert await acme.refused_publish(command_subject(forged.op))
            await acme.nc.publish(
                space_command_subject("globex", forged_sync.op), encode(forged_sync)
            )
            assert await acme.refused_publish(space_command_subject("globex", forged_sync.op))

            # Its own space's commands, on its space's subject, run end to end.
            await acme.send(own)
            assert (await upstream.result_in("acme.eu", "acme-1")).success
            await acme.send(own_sync)
            assert (await upstream.result_in("acme.eu", "acme-2")).success

            # The shared upstream login, trusted for every space, keeps the subject
            # that names none, and may use a space's own.
            await upstream.publish(theirs)
            assert (await upstream.result_in("globex", "globex-1")).success
            ack = await upstream.js.publish(
                space_command_subject("globex", theirs_sync.op),
                encode(theirs_sync),
                headers={HEADER_MSG_ID: command_msg_id("globex", "globex-2")},
            )
            assert not ack.duplicate
            assert (await upstream.result_in("globex", "globex-2")).success

            await eventually(lambda: asyncio.sleep(0, globex.answered()), lambda a: len(a) == 2)
            await eventually(lambda: asyncio.sleep(0, acme.answered()), lambda a: len(a) == 2)
            with pytest.raises(nats.errors.Error):  # no RPC: its answer would name any space
                await acme.nc.request(rpc_subject(own.op), encode(own), timeout=1)
        finally:
            await acme.nc.close()
            await globex.nc.close()

        # Every upstream reading syncyard.result.> gets each result once, as before.
        assert len(upstream.in_space[("globex", "globex-1")]) == 1
        assert len(upstream.in_space[("acme.eu", "acme-1")]) == 1
        assert ("globex", "forged-1") not in upstream.in_space
        assert ("globex", "forged-2") not in upstream.in_space

    assert globex.answered() == ["globex-1", "globex-2"]
    assert acme.answered() == ["acme-1", "acme-2"]
    assert [msg.subject for msg in acme.results] == [
        "syncyard.space.acme%2Eeu.result.connection.register",
        "syncyard.space.acme%2Eeu.result.sync.transactions",
    ]
    assert acme.results[0].headers["Syncyard-Space-Id"] == "acme.eu"
    assert any(
        'permissions violation for subscription to "syncyard.result.>"' in e for e in acme.errors
    )
    registered = [t for _, t, _ in await stored_events(database_url) if t == "ConnectionRegistered"]
    assert len(registered) == 2  # acme's and the shared login's globex: no forged one


async def test_a_command_on_a_tenant_s_subject_for_another_space_is_refused_and_told_only_there(
    tenant_nats: str, sandbox: str, database_url: str
) -> None:
    forged = register("acct-globex", "plaid", "forged-3", space_id="globex")
    async with (
        running_syncyard(settings_for(sandbox), tenant_nats, database_url),
        client(tenant_nats) as upstream,
    ):
        acme, globex = await tenant(tenant_nats, ACME), await tenant(tenant_nats, GLOBEX)
        try:
            await acme.nc.subscribe("syncyard.space.acme%2Eeu.result.>", cb=acme.on_result)
            await globex.nc.subscribe("syncyard.space.globex.result.>", cb=globex.on_result)
            await acme.nc.flush()
            await globex.nc.flush()

            # On its own space's subject, a payload naming globex's space: not run.
            await acme.send(forged, subject=space_command_subject("acme.eu", forged.op))
            mismatch = await upstream.result_in("acme.eu", "forged-3")
            # And a command that cannot be decoded, claiming globex's space: not believed.
            await acme.js.publish(
                space_command_subject("acme.eu", "sync.transactions"),
                b'{"command_id":"junk-1","space_id":"globex"}',  # no account_id
                headers={HEADER_MSG_ID: "acme.eu/junk-1"},
            )
            junk = await upstream.result_in("acme.eu", "junk-1")

            # The results globex's login reads come in the order the worker sent them:
            # once globex's own arrives, a refusal told to globex would have come first.
            await upstream.publish(register("acct-globex", "plaid", "globex-1", space_id="globex"))
            assert (await upstream.result_in("globex", "globex-1")).success
            await eventually(lambda: asyncio.sleep(0, globex.answered()), lambda a: len(a) == 1)
            await eventually(lambda: asyncio.sleep(0, acme.answered()), lambda a: len(a) == 2)
        finally:
            await acme.nc.close()
            await globex.nc.close()

    assert mismatch.error is not None and not mismatch.success
    assert mismatch.error.code == "space_mismatch"
    assert junk.error is not None and junk.error.code == "invalid_command"
    assert globex.answered() == ["globex-1"]  # no refusal planted among globex's results
    assert acme.answered() == ["forged-3", "junk-1"]
    letters = await eventually(
        lambda: stream_messages(tenant_nats, "syncyard.dlq.>"), lambda msgs: len(msgs) == 2
    )
    reasons = {decode_json(m.data)["command_id"]: decode_json(m.data) for m in letters}
    assert reasons["forged-3"]["reason_code"] == "space_mismatch"
    assert reasons["forged-3"]["original_subject"] == (
        "syncyard.space.acme%2Eeu.cmd.connection.register"
    )
    assert reasons["junk-1"]["reason_code"] == "invalid_command"
    registered = [t for _, t, _ in await stored_events(database_url) if t == "ConnectionRegistered"]
    assert len(registered) == 1  # globex's own: the forged registration never ran


async def test_garbage_on_the_subject_that_names_no_space_is_refused_on_the_global_results_only(
    tenant_nats: str, sandbox: str, database_url: str
) -> None:
    async with (
        running_syncyard(settings_for(sandbox), tenant_nats, database_url),
        client(tenant_nats) as upstream,
    ):
        globex = await tenant(tenant_nats, GLOBEX)
        try:
            await globex.nc.subscribe("syncyard.space.globex.result.>", cb=globex.on_result)
            await globex.nc.flush()
            # It cannot be decoded, and claims globex's space: a claim, not where it was sent.
            await upstream.publish_raw(
                "sync.transactions", b'{"command_id":"junk-2","space_id":"globex"}', "globex/junk-2"
            )
            refused = await upstream.result("junk-2")
            await upstream.publish(register("acct-globex", "plaid", "globex-1", space_id="globex"))
            assert (await upstream.result_in("globex", "globex-1")).success
            await eventually(lambda: asyncio.sleep(0, globex.answered()), lambda a: len(a) == 1)
        finally:
            await globex.nc.close()

    assert refused.error is not None and refused.error.code == "invalid_command"
    assert ("", "junk-2") in upstream.in_space  # no space named: none claimed
    assert ("globex", "junk-2") not in upstream.in_space
    assert globex.answered() == ["globex-1"]


async def test_the_fleet_s_ops_run_only_on_the_fleet_wide_subject(
    tenant_nats: str, sandbox: str, database_url: str
) -> None:
    hold = ForceBreaker(
        command_id="hold-1",
        space_id="acme.eu",
        provider="plaid",
        state="open",
        duration_s=60,
        actor="acme-ops",
        reason="a tenant holding plaid open for everyone",
    )
    async with (
        running_syncyard(settings_for(sandbox), tenant_nats, database_url),
        client(tenant_nats) as upstream,
    ):
        acme = await tenant(tenant_nats, ACME)
        try:
            # A tenant may not send it, even for its own space: it acts for every space.
            subject = space_command_subject("acme.eu", hold.op)
            await acme.nc.publish(subject, encode(hold))
            assert await acme.refused_publish(subject)
        finally:
            await acme.nc.close()
        # A login that may publish there anyway: the worker refuses it, and it never runs.
        await upstream.js.publish(
            subject,
            encode(hold),
            headers={HEADER_MSG_ID: command_msg_id(hold.space_id, hold.command_id)},
        )
        refused = await upstream.result_in("acme.eu", "hold-1")

    assert refused.error is not None and refused.error.code == "fleet_op"
    assert "BreakerForced" not in [t for _, t, _ in await stored_events(database_url)]


async def test_a_tenant_cannot_make_jetstream_drop_another_space_s_command_by_its_message_id(
    tenant_nats: str, sandbox: str, database_url: str
) -> None:
    # acme knows (or guesses) globex's next command ids, and sends its own commands
    # first with globex's message ids, on the one subject its login may publish on.
    squat_register = register("acct-acme", "plaid", "acme-squat-1", space_id="acme.eu")
    squat_sync = sync("acct-acme", "acme-squat-2", space_id="acme.eu")
    theirs = register("acct-globex", "plaid", "globex-1", space_id="globex")
    theirs_sync = sync("acct-globex", "globex-2", space_id="globex")
    async with (
        running_syncyard(settings_for(sandbox), tenant_nats, database_url),
        client(tenant_nats) as upstream,
    ):
        acme, globex = await tenant(tenant_nats, ACME), await tenant(tenant_nats, GLOBEX)
        try:
            await globex.nc.subscribe("syncyard.space.globex.result.>", cb=globex.on_result)
            await globex.nc.flush()
            for squat, victim in ((squat_register, theirs), (squat_sync, theirs_sync)):
                ack = await acme.js.publish(
                    space_command_subject("acme.eu", squat.op),
                    encode(squat),
                    headers={HEADER_MSG_ID: command_msg_id("globex", victim.command_id)},
                )
                assert not ack.duplicate
                assert (await upstream.result_in("acme.eu", squat.command_id)).success

            # globex's own registration, from its tenant login on its space's subject ...
            ack = await globex.js.publish(
                space_command_subject("globex", theirs.op),
                encode(theirs),
                headers={HEADER_MSG_ID: command_msg_id("globex", theirs.command_id)},
            )
            assert not ack.duplicate  # JetStream took it: nobody else's id stands in its way
            registered = await upstream.result_in("globex", "globex-1")
            # ... and its sync, from the shared login on the subject that names no space.
            assert await upstream.publish(theirs_sync)
            synced = await upstream.result_in("globex", "globex-2")
            await eventually(lambda: asyncio.sleep(0, globex.answered()), lambda a: len(a) == 2)

            # Sent again (a publisher's retry): answered as a duplicate, applied once.
            await globex.send(theirs)
            await eventually(
                lambda: asyncio.sleep(0, upstream.in_space.get(("globex", "globex-1"), [])),
                lambda results: len(results) == 2,
            )
        finally:
            await acme.nc.close()
            await globex.nc.close()

    assert registered.success and not registered.duplicate
    assert synced.success and not synced.duplicate
    assert upstream.in_space[("globex", "globex-1")][1].duplicate
    events = [t for _, t, _ in await stored_events(database_url)]
    assert events.count("ConnectionRegistered") == 2  # acme's and globex's, once each
    assert events.count("ProviderLinked") == 2
    assert events.count("SyncCompleted") == 2  # acme's squatting sync and globex's own

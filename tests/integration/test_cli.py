"""The `syncyard` command line, run as a person runs it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import msgspec
import psutil  # type: ignore[import-untyped]
import pytest

from infra.bootstrap import Runtime
from infra.embedded import find_free_port
from tests.support import bus

pytestmark = pytest.mark.integration


async def syncyard_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra.cli",
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def written_files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


async def test_schema_writes_one_json_schema_per_contract_type_and_the_asyncapi_document(
    tmp_path: Path,
) -> None:
    code, out = await syncyard_cli("schema", "--out", str(tmp_path))
    assert code == 0, out
    written = written_files(tmp_path)
    assert "command.sync.transactions.schema.json" in written
    assert "result.schema.json" in written
    assert json.loads(written["asyncapi.json"])["asyncapi"] == "3.0.0"
    schema = json.loads(written["command.connection.register.schema.json"])
    assert "access_token" in json.dumps(schema)


async def test_send_refuses_a_bad_command_before_it_reaches_nats() -> None:
    code, out = await syncyard_cli(
        "send",
        "sync.transactions",
        '{"command_id":"c","space_id":"s"}',
        env={"NATS_URL": "nats://127.0.0.1:1"},
    )
    assert code == 2
    assert "account_id" in out


async def test_send_delivers_a_command_and_prints_its_result(
    syncyard: Runtime, nats_url: str
) -> None:
    register = (
        '{"command_id":"cli-reg","space_id":"s","account_id":"cli-acct","provider":"plaid",'
        '"item_id":"i","access_token":"access-sandbox-cli"}'
    )
    code, out = await syncyard_cli(
        "send", "connection.register", register, env={"NATS_URL": nats_url, **bus.env(nats_url)}
    )
    assert code == 0, out
    assert "accepted: stream SYNCYARD_CMD" in out
    assert '"success": true' in out
    assert "access-sandbox-cli" not in out

    sync = '{"command_id":"cli-sync","space_id":"s","account_id":"cli-acct"}'
    code, out = await syncyard_cli(
        "send", "sync.transactions", sync, "--rpc", env={"NATS_URL": nats_url, **bus.env(nats_url)}
    )
    assert code == 0, out
    assert '"provider": "plaid"' in out


async def test_send_of_a_command_id_already_accepted_prints_its_original_result_at_once(
    syncyard: Runtime, nats_url: str
) -> None:
    env = {"NATS_URL": nats_url, **bus.env(nats_url)}
    register = (
        '{"command_id":"cli-reg-2","space_id":"s","account_id":"cli-acct-2","provider":"plaid",'
        '"item_id":"i","access_token":"access-sandbox-cli-2"}'
    )
    assert (await syncyard_cli("send", "connection.register", register, env=env))[0] == 0
    sync = '{"command_id":"cli-sync-2","space_id":"s","account_id":"cli-acct-2"}'
    code, first = await syncyard_cli("send", "sync.transactions", sync, env=env)
    assert code == 0, first

    # Inside NATS's duplicate window the resend is dropped from the queue: the
    # CLI asks for the original result instead of waiting for one that never comes.
    code, again = await syncyard_cli("send", "sync.transactions", sync, "--timeout", "10", env=env)

    assert code == 0, again
    assert "already accepted" in again and '"duplicate": true' in again
    entries = msgspec.json.decode(first[first.index("{") :])["data"]["entries"]
    assert entries and msgspec.json.decode(again[again.index("{") :])["data"]["entries"] == entries


async def test_send_that_gets_no_result_in_time_says_so_without_a_traceback(
    nats_url: str,
) -> None:
    sync = '{"command_id":"cli-lonely","space_id":"s","account_id":"nobody"}'
    env = {"NATS_URL": nats_url, **bus.env(nats_url)}
    args = ("send", "sync.transactions", sync, "--rpc", "--timeout", "1")

    code, out = await syncyard_cli(*args, env=env)
    assert code == 1 and "nothing answers syncyard.rpc.sync.transactions" in out
    assert "Traceback" not in out

    # Someone listens but never answers (a stuck replica): the timeout, said plainly.
    nc = await bus.connect(nats_url, bus.WORKER)  # as a replica of syncyard
    try:
        await nc.subscribe("syncyard.rpc.sync.transactions", cb=_never_answer)
        await nc.flush()
        code, out = await syncyard_cli(*args, env=env)
    finally:
        await nc.drain()
    assert code == 1 and "no result for cli-lonely within 1 s" in out
    assert "Traceback" not in out


async def test_send_before_syncyard_declared_its_streams_says_it_may_be_starting(
    nats_url: str, clean_jetstream: None
) -> None:
    # `make run` writes nats.url as soon as NATS is up, seconds before the streams exist.
    sync = '{"command_id":"cli-early","space_id":"s","account_id":"nobody"}'
    env = {"NATS_URL": nats_url, **bus.env(nats_url)}

    code, out = await syncyard_cli("send", "sync.transactions", sync, "--timeout", "2", env=env)

    assert code == 1, out
    assert "no stream takes syncyard.cmd.sync.transactions" in out and "starting" in out
    assert "Traceback" not in out


async def _never_answer(msg: object) -> None:
    return None


async def test_send_with_a_wrong_nats_password_says_so_at_once_and_never_prints_it(
    nats_url: str, tmp_path: Path
) -> None:
    if not bus.credentials(nats_url):
        pytest.skip("this NATS lets anyone in: nothing to refuse")
    wrong = tmp_path / "upstream.password"
    wrong.write_text("not-the-password-s3cret\n")
    env = {**bus.env(nats_url), "NATS_URL": nats_url}
    env["SYNCYARD_NATS_UPSTREAM_PASSWORD_FILE"] = str(wrong)
    sync = '{"command_id":"cli-wrong","space_id":"s","account_id":"nobody"}'

    code, out = await syncyard_cli("send", "sync.transactions", sync, env=env)

    assert code == 1, out
    assert "cannot connect to NATS" in out and "as upstream" in out
    assert "Authorization Violation" in out and "SYNCYARD_NATS_UPSTREAM_PASSWORD_FILE" in out
    assert "Traceback" not in out and "s3cret" not in out


async def test_up_with_only_a_database_url_refuses_naming_what_is_missing_and_no_password(
    tmp_path: Path,
) -> None:
    env = {
        "DATABASE_URL": "postgresql://app:hunter2-s3cret@db.example:5432/sy?sslmode=verify-full",
        "SYNCYARD_STATE_DIR": str(tmp_path),
    }

    code, out = await syncyard_cli("up", env=env)

    assert code == 2, out
    assert "SYNCYARD_CIPHER_KEY" in out
    assert "SYNCYARD_PLAID_BASE_URL" in out  # no fallback to the sandbox
    assert "hunter2" not in out
    assert "Traceback" not in out
    assert written_files(tmp_path) == {}  # nothing started, no key generated


async def test_serve_refuses_an_http_provider_url_and_never_prints_the_database_password(
    tmp_path: Path,
) -> None:
    env = {
        "NATS_URL": "nats://nats-token-s3cret@127.0.0.1:1",
        "DATABASE_URL": "postgresql://app:hunter2-s3cret@127.0.0.1:1/sy",
        "SYNCYARD_CIPHER_KEY": "k" * 44,
        "SYNCYARD_PLAID_BASE_URL": "http://plaid.internal",
        "SYNCYARD_PLAID_CLIENT_ID": "client",
        "SYNCYARD_PLAID_SECRET": "secret",
    }

    code, out = await syncyard_cli("serve", env=env)

    assert code == 2, out
    assert "SYNCYARD_PLAID_BASE_URL must be an https:// URL" in out
    assert "hunter2" not in out and "nats-token" not in out


@pytest.mark.timeout(180)
async def test_up_runs_the_relay_and_projector_in_a_second_process_and_stops_it(
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("NATS_URL", "DATABASE_URL") and not key.startswith("SYNCYARD_")
    }
    env |= {
        "SYNCYARD_STATE_DIR": str(tmp_path),
        "SYNCYARD_HTTP_PORT": str(find_free_port()),
        "SYNCYARD_SANDBOX_PORT": str(find_free_port()),
    }
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infra.cli", "up", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert up.stdout is not None
    try:
        async with asyncio.timeout(120):
            while b"Ctrl-C" not in await up.stdout.readline():
                assert up.returncode is None
        (followers,) = [
            child
            for child in psutil.Process(up.pid).children()
            if "relay,projector" in " ".join(child.cmdline())
        ]
        assert "serve" in followers.cmdline()

        # A SIGTERM to `up` alone (Ctrl-C would reach both): it stops its followers too.
        up.terminate()
        async with asyncio.timeout(60):
            await up.communicate()
        assert up.returncode == 0
        assert not followers.is_running() or followers.status() == psutil.STATUS_ZOMBIE
    finally:
        if up.returncode is None:
            up.kill()
            await up.wait()

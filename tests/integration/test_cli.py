"""The `syncyard` command line, run as a person runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
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


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path: Path) -> None:
    """`syncyard … | head -1`: the pipe's reader is gone before syncyard writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "infra.cli", "schema", "--out", str(tmp_path)],
            stdout=write,
            stderr=subprocess.PIPE,
            check=False,
            timeout=60,
        )
    finally:
        os.close(write)
    said = done.stderr.decode()
    assert done.returncode == 141, said
    assert "Traceback" not in said and "BrokenPipeError" not in said, said


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


async def test_send_of_a_command_id_already_accepted_prints_its_original_result(
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

    # NATS keeps the resend (no duplicate window on the command queue): the worker
    # recognises the command id and answers the original result, marked duplicate.
    code, again = await syncyard_cli("send", "sync.transactions", sync, "--timeout", "10", env=env)

    assert code == 0, again
    assert '"duplicate": true' in again
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


@pytest.mark.timeout(60)
async def test_serve_stops_on_sigterm_while_nats_never_answers_and_says_so(
    tmp_path: Path,
) -> None:
    closed = find_free_port()  # nothing listens there: the client retries without end
    env = {key: value for key, value in os.environ.items() if not key.startswith("SYNCYARD_")} | {
        "NATS_URL": f"nats://127.0.0.1:{closed}",
        "DATABASE_URL": f"postgresql://app@127.0.0.1:{closed}/sy",
        "SYNCYARD_CIPHER_KEY": "k" * 44,
        "SYNCYARD_STATE_DIR": str(tmp_path),
    }
    serve = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra.cli",
        "serve",
        "--components",
        "relay,projector",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert serve.stdout is not None
    try:
        async with asyncio.timeout(30):
            while b"connecting to NATS at" not in await serve.stdout.readline():
                assert serve.returncode is None
        # Past the first refused attempts, into the retries (nats-py waits 2 s between).
        await asyncio.sleep(2.5)

        serve.terminate()
        # A liveness guard for an orchestrator's stop, not a measure of its speed.
        async with asyncio.timeout(15):
            out = (await serve.stdout.read()).decode()
            await serve.wait()

        assert serve.returncode == 3, out
        assert f"stopped while connecting to NATS at nats://127.0.0.1:{closed}" in out
        # Each refused attempt is not a traceback of its own: the refusal is said once.
        assert "Traceback" not in out, out
        assert out.count("NATS (relay): ConnectionRefusedError") == 1, out
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()


def up_env(state_dir: Path) -> dict[str, str]:
    """`up` on its own embedded servers in `state_dir`, with none of the suite's settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("NATS_URL", "DATABASE_URL") and not key.startswith("SYNCYARD_")
    }
    return env | {
        "SYNCYARD_STATE_DIR": str(state_dir),
        "SYNCYARD_HTTP_PORT": str(find_free_port()),
        "SYNCYARD_SANDBOX_PORT": str(find_free_port()),
    }


async def start_up(env: dict[str, str], stderr: int | None = None) -> asyncio.subprocess.Process:
    """`syncyard up`, once its banner says it is ready."""
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra.cli",
        "up",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    assert up.stdout is not None
    async with asyncio.timeout(120):
        while b"Ctrl-C" not in await up.stdout.readline():
            assert up.returncode is None
    return up


def followers_of(up: asyncio.subprocess.Process) -> psutil.Process:
    (followers,) = [
        child
        for child in psutil.Process(up.pid).children()
        if "relay,projector" in " ".join(child.cmdline())
    ]
    return followers


def is_gone(proc: psutil.Process) -> bool:
    # Reparented to an init that may not reap it: a zombie is gone for our purposes.
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(proc: psutil.Process, timeout: float) -> None:
    # Polled: it is not our child (nothing to wait on), and may linger as a zombie.
    async with asyncio.timeout(timeout):
        while not is_gone(proc):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def embedded_servers(state_dir: Path) -> list[psutil.Process]:
    """The nats-server and postmaster `up` started in `state_dir`, by their pid files."""
    pid_files = [state_dir / "nats.pid", state_dir / "pg" / "postmaster.pid"]
    return [psutil.Process(int(path.read_text().split()[0])) for path in pid_files if path.exists()]


async def kill_up_and_everything_it_started(
    up: asyncio.subprocess.Process, started: list[psutil.Process]
) -> None:
    """A failed test's clean-up: nothing it started may outlive it."""
    if up.returncode is None:
        up.kill()
    for proc in started:
        if not is_gone(proc):
            proc.kill()
    # Only now: on Python 3.11 the wait lasts until every holder of `up`'s pipes is gone.
    await up.wait()


@pytest.mark.timeout(180)
async def test_up_runs_the_relay_and_projector_in_a_second_process_and_stops_it(
    tmp_path: Path,
) -> None:
    up = await start_up(up_env(tmp_path))
    followers = followers_of(up)
    try:
        assert "serve" in followers.cmdline()
        # It logs in to NATS as the relay, the one role it needs (the projector needs none).
        assert {key for key in followers.environ() if key.startswith("SYNCYARD_NATS_")} == {
            "SYNCYARD_NATS_RELAY_USER",
            "SYNCYARD_NATS_RELAY_PASSWORD_FILE",
        }

        # A SIGTERM to `up` alone (Ctrl-C would reach both): it stops its followers too.
        up.terminate()
        async with asyncio.timeout(60):
            await up.communicate()
        assert up.returncode == 0
        assert is_gone(followers)
    finally:
        await kill_up_and_everything_it_started(up, [followers, *embedded_servers(tmp_path)])


@pytest.mark.timeout(240)
async def test_a_killed_up_takes_its_followers_and_servers_down_and_the_next_up_finds_its_data(
    tmp_path: Path,
) -> None:
    env = up_env(tmp_path)
    # The followers share `up`'s stderr: its end of file is theirs gone too.
    up = await start_up(env, stderr=asyncio.subprocess.PIPE)
    assert up.stderr is not None
    said = asyncio.create_task(up.stderr.read())
    servers = embedded_servers(tmp_path)
    assert len(servers) == 2, "precondition: up runs its nats-server and postgres"
    followers = followers_of(up)
    register = (
        '{"command_id":"reg-killed-up","space_id":"demo","account_id":"acct-killed-up",'
        '"provider":"plaid","item_id":"item-demo-1","access_token":"access-sandbox-demo-1"}'
    )
    try:
        code, out = await syncyard_cli("send", "connection.register", register, env=env)
        assert code == 0, out

        up.kill()

        # Generous bounds on a clean stop, not measures of its speed.
        await wait_gone(followers, timeout=60)
        async with asyncio.timeout(60):
            log = (await said).decode()
        assert "standard input closed" in log
        # The servers die with `up` (their parent-death signal): nats-server by its
        # SIGTERM, PostgreSQL by its fast shutdown, which leaves nothing to recover.
        for server in servers:
            await wait_gone(server, timeout=15)
        assert "database system is shut down" in (tmp_path / "postgres.log").read_text()

        again = await start_up(env)
        try:
            code, out = await syncyard_cli("audit", "connection", "demo/acct-killed-up", env=env)
        finally:
            again.terminate()
            async with asyncio.timeout(60):
                await again.communicate()
        assert again.returncode == 0
        assert code == 0 and "ConnectionRegistered" in out, out
        assert "not properly shut down" not in (tmp_path / "postgres.log").read_text()
    finally:
        said.cancel()
        await kill_up_and_everything_it_started(
            up, [followers, *servers, *embedded_servers(tmp_path)]
        )


@pytest.mark.timeout(180)
async def test_a_hung_up_terminal_stops_up_cleanly_with_its_servers(tmp_path: Path) -> None:
    up = await start_up(up_env(tmp_path))
    servers = embedded_servers(tmp_path)
    followers = followers_of(up)
    try:
        up.send_signal(signal.SIGHUP)

        async with asyncio.timeout(60):
            out, _ = await up.communicate()
        assert up.returncode == 0
        assert b"syncyard stopped cleanly." in out
        assert all(is_gone(proc) for proc in [followers, *servers])
        assert not (tmp_path / "pg" / "postmaster.pid").exists()
        assert not (tmp_path / "nats.pid").exists()
    finally:
        await kill_up_and_everything_it_started(up, [followers, *servers])

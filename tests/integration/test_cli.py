"""The `syncyard` command line, run as a person runs it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from infra.bootstrap import Runtime

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
        "send", "connection.register", register, env={"NATS_URL": nats_url}
    )
    assert code == 0, out
    assert "accepted: stream SYNCYARD_CMD" in out
    assert '"success": true' in out
    assert "access-sandbox-cli" not in out

    sync = '{"command_id":"cli-sync","space_id":"s","account_id":"cli-acct"}'
    code, out = await syncyard_cli(
        "send", "sync.transactions", sync, "--rpc", env={"NATS_URL": nats_url}
    )
    assert code == 0, out
    assert '"provider": "plaid"' in out

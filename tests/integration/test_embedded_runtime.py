"""The embedded servers: they keep their data, leave no orphans, and work for clients."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import nats
import psutil  # type: ignore[import-untyped]
import psycopg
import pytest

from infra.embedded import EmbeddedNats, EmbeddedPostgres, EmbeddedServerError
from infra.nats_credentials import connect_options
from tests.support import bus

pytestmark = pytest.mark.integration


def as_admin(server: EmbeddedNats) -> dict[str, Any]:
    """Login as the operator's role: these tests make streams of their own."""
    return connect_options(bus.ADMIN, server.credentials[bus.ADMIN])


# A Python process that starts the servers named in argv[2:] on the state dir in
# argv[1], prints their pids as one JSON line, then waits to be killed or interrupted.
# With "untied" among them, the servers outlive it when it is killed (no parent-death
# signal), as on a system that has none.
CHILD = """
import asyncio, contextlib, json, sys
from pathlib import Path
from infra.embedded import EmbeddedNats, EmbeddedPostgres

async def main() -> None:
    state_dir, wanted = Path(sys.argv[1]), sys.argv[2:]
    tied = "untied" not in wanted
    async with contextlib.AsyncExitStack() as stack:
        pids = {}
        if "nats" in wanted:
            nats = EmbeddedNats(state_dir, tied_to_parent=tied)
            pids["nats"] = (await stack.enter_async_context(nats)).pid
        if "postgres" in wanted:
            postgres = EmbeddedPostgres(state_dir, tied_to_parent=tied)
            pids["postgres"] = (await stack.enter_async_context(postgres)).pid
        print(json.dumps(pids), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def start_child(
    state_dir: Path, *servers: str
) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(state_dir), *servers, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    async with asyncio.timeout(60):
        line = await child.stdout.readline()
    pids: dict[str, int] = json.loads(line)
    return child, pids


def is_running(pid: int) -> bool:
    # Orphans are reparented to pid 1, which may never reap them: a zombie is dead.
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


async def test_a_second_postgres_start_on_the_same_state_dir_finds_the_data(
    tmp_path: Path,
) -> None:
    async with EmbeddedPostgres(tmp_path) as first:
        connection = await asyncpg.connect(first.url)
        try:
            # A lock wait is logged with its holder: what a 3 a.m. reader needs.
            assert await connection.fetchval("SHOW log_lock_waits") == "on"
            await connection.execute("CREATE TABLE kept (note text)")
            await connection.execute("INSERT INTO kept VALUES ('written by the first start')")
        finally:
            await connection.close()

    async with EmbeddedPostgres(tmp_path) as second:
        host, port, user, dbname = second.dsn_parts()
        async with await psycopg.AsyncConnection.connect(
            host=host, port=port, user=user, dbname=dbname
        ) as psycopg_connection:
            cursor = await psycopg_connection.execute("SELECT note FROM kept")
            assert await cursor.fetchall() == [("written by the first start",)]


async def test_jetstream_acknowledges_a_publish_and_keeps_the_stream_across_restarts(
    tmp_path: Path,
) -> None:
    async with EmbeddedNats(tmp_path) as server:
        client = await nats.connect(server.url, **as_admin(server))
        try:
            stream = client.jetstream()
            await stream.add_stream(name="ORDERS", subjects=["orders.>"])
            ack = await stream.publish("orders.placed", b"first")
            assert (ack.stream, ack.seq) == ("ORDERS", 1)
        finally:
            await client.close()

    async with EmbeddedNats(tmp_path) as server:
        client = await nats.connect(server.url, **as_admin(server))
        try:
            ack = await client.jetstream().publish("orders.placed", b"second")
            assert (ack.stream, ack.seq) == ("ORDERS", 2)
        finally:
            await client.close()


async def test_a_nats_server_that_cannot_bind_reports_its_fatal_log_lines(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedServerError) as raised:
            async with EmbeddedNats(tmp_path, port=port):
                pass
    assert any("address already in use" in line for line in raised.value.log_lines)
    assert not (tmp_path / "nats.pid").exists()


@pytest.mark.fault
async def test_a_nats_server_left_by_a_killed_process_is_stopped_by_the_next_start(
    tmp_path: Path,
) -> None:
    child, pids = await start_child(tmp_path, "nats", "untied")
    child.kill()
    await child.communicate()
    orphan = pids["nats"]
    assert is_running(orphan), "precondition: the killed process left its server behind"

    async with EmbeddedNats(tmp_path) as server:
        assert not is_running(orphan)
        client = await nats.connect(server.url, **as_admin(server))
        try:
            await client.jetstream().add_stream(name="AFTER_CRASH", subjects=["after.>"])
            ack = await client.jetstream().publish("after.crash", b"still works")
            assert ack.seq == 1
        finally:
            await client.close()
    assert not (tmp_path / "nats.pid").exists()


@pytest.mark.fault
async def test_a_postgres_left_by_a_killed_process_is_stopped_by_the_next_start(
    tmp_path: Path,
) -> None:
    child, pids = await start_child(tmp_path, "postgres", "untied")
    child.kill()
    await child.communicate()
    orphan = pids["postgres"]
    assert is_running(orphan), "precondition: the killed process left its server behind"

    async with EmbeddedPostgres(tmp_path) as server:
        assert not is_running(orphan)
        assert server.pid != orphan
        connection = await asyncpg.connect(server.url)
        try:
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


async def wait_not_running(pid: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while is_running(pid):  # noqa: ASYNC110 - not our child: nothing to wait on
            await asyncio.sleep(0.05)


@pytest.mark.fault
async def test_both_servers_stop_when_the_process_that_started_them_is_killed(
    tmp_path: Path,
) -> None:
    child, pids = await start_child(tmp_path, "nats", "postgres")
    try:
        child.kill()
        await child.communicate()

        # A generous bound, a liveness guard rather than a measure of the stop's speed.
        await wait_not_running(pids["nats"], timeout=15)
        await wait_not_running(pids["postgres"], timeout=15)
        # PostgreSQL went down by its fast shutdown (SIGINT), checkpoint written,
        # nothing for the next start to recover.
        log = (tmp_path / "postgres.log").read_text()
        assert "received fast shutdown request" in log
        assert "database system is shut down" in log
        assert not (tmp_path / "pg" / "postmaster.pid").exists()
    finally:
        for pid in pids.values():
            if is_running(pid):
                psutil.Process(pid).kill()

    async with EmbeddedPostgres(tmp_path) as again:
        connection = await asyncpg.connect(again.url)
        try:
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()
    assert "not properly shut down" not in (tmp_path / "postgres.log").read_text()


@pytest.mark.fault
async def test_sigint_stops_both_servers_before_the_process_exits(tmp_path: Path) -> None:
    child, pids = await start_child(tmp_path, "nats", "postgres")
    child.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        await child.communicate()

    assert not is_running(pids["nats"])
    assert not is_running(pids["postgres"])
    assert not (tmp_path / "nats.pid").exists()
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


async def test_each_test_gets_a_fresh_database_and_an_empty_jetstream(
    database_url: str, nats_url: str, clean_jetstream: None
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        name = await connection.fetchval("SELECT current_database()")
        tables = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        assert (name, tables) == (urlsplit(database_url).path.lstrip("/"), 0)
    finally:
        await connection.close()
    client = await bus.connect(nats_url, bus.ADMIN)
    try:
        assert await client.jsm().streams_info() == []
    finally:
        await client.close()

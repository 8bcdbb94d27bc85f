"""The bare pipeline: the I/O of one sync and nothing else, the floor syncyard is held to.

Per command: consumed from a JetStream work queue, one HTTP call to the
sandbox's `/plaid/transactions/sync`, a row in one batched INSERT per fetched
batch (one transaction, as the group committer saves a batch), one result
published on core NATS, the message acked after the commit. No decoding into
types, no breakers, no events: what is left when syncyard's own work is taken
away. `bench.spine` runs it in its own process (`python -m bench.pipeline`)
and reads its CPU as it reads syncyard's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import asyncpg
import nats
from nats.aio.msg import Msg

from infra.nats_credentials import NatsCredential, connect_options
from infra.nats_roles import ADMIN

STREAM = "BENCH_PIPE"
SUBJECT = "bench.pipe.cmd"
RESULTS = "bench.pipe.result"
CONSUMER = "pipe"
# Where the parent passes the admin login (the pipeline is an operator's, not a role's).
USER_VARIABLE = "BENCH_NATS_USER"
PASSWORD_FILE_VARIABLE = "BENCH_NATS_PASSWORD_FILE"


async def serve(nats_url: str, db_url: str, sandbox_url: str) -> None:
    password_file = os.environ.get(PASSWORD_FILE_VARIABLE)
    credential = (
        NatsCredential(user=os.environ.get(USER_VARIABLE), password_file=Path(password_file))
        if password_file
        else None
    )
    nc = await nats.connect(nats_url, **connect_options(ADMIN, credential))
    js = nc.jetstream()
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bench_pipe (command_id text PRIMARY KEY, page text)"
    )
    sub = await js.pull_subscribe_bind(CONSUMER, STREAM)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    url = f"{sandbox_url}/plaid/transactions/sync"
    async with aiohttp.ClientSession() as session:

        async def call(msg: Msg) -> tuple[str, str]:
            command = json.loads(msg.data)
            body = {
                "client_id": "bench",
                "secret": "b",
                "access_token": f"access-sandbox-{command['account_id']}",
                "count": command.get("count", 5),
            }
            async with session.post(url, json=body) as resp:
                page = await resp.text()
            return command["command_id"], page

        print("ready", flush=True)
        while not stop.is_set():
            try:
                msgs = await sub.fetch(256, timeout=0.5)
            except TimeoutError:
                continue
            rows = await asyncio.gather(*(call(m) for m in msgs))
            async with pool.acquire() as conn:
                await conn.executemany(
                    "INSERT INTO bench_pipe (command_id, page) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    rows,
                )
            for msg, (command_id, _page) in zip(msgs, rows, strict=True):
                await nc.publish(
                    RESULTS, b'{"success":true}', headers={"Syncyard-Command-Id": command_id}
                )
                await msg.ack()
    with contextlib.suppress(Exception):
        await nc.drain()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:4]))

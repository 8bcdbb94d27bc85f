"""The bare pipeline: the I/O of one sync and nothing else, the floor syncyard is held to.

Per command: consumed from a JetStream work queue, the HTTP calls of one sync
to the sandbox's `/plaid/transactions/sync` (from the account's cursor, page
after page while the sandbox has more, as syncyard's walk does: one call once
an account is caught up), a row in one batched INSERT per fetched
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
from services.orchestrator import MAX_PAGES_PER_SYNC

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
        cursors: dict[str, str] = {}

        async def call(msg: Msg) -> tuple[str, str, bool]:
            command = json.loads(msg.data)
            account = command["account_id"]
            pages = []
            for _ in range(MAX_PAGES_PER_SYNC):
                body = {
                    "client_id": "bench",
                    "secret": "b",
                    # The token syncyard registers for account "a<n>" (bench.spine).
                    "access_token": f"access-sandbox-{account[1:]}",
                    "cursor": cursors.get(account, ""),
                    "count": command.get("count", 5),
                }
                async with session.post(url, json=body) as resp:
                    page = await resp.json()
                pages.append(page)
                cursors[account] = page["next_cursor"]
                if not page["has_more"]:
                    break
            # has_more: the walk stopped at MAX_PAGES_PER_SYNC, as syncyard's answer says.
            return command["command_id"], json.dumps(pages), bool(pages[-1]["has_more"])

        print("ready", flush=True)
        while not stop.is_set():
            try:
                msgs = await sub.fetch(256, timeout=0.5)
            except TimeoutError:
                continue
            walks = await asyncio.gather(*(call(m) for m in msgs))
            async with pool.acquire() as conn:
                await conn.executemany(
                    "INSERT INTO bench_pipe (command_id, page) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    [(command_id, page) for command_id, page, _ in walks],
                )
            for msg, (command_id, _page, has_more) in zip(msgs, walks, strict=True):
                await nc.publish(
                    RESULTS,
                    b'{"success":true,"has_more":true}'
                    if has_more
                    else b'{"success":true,"has_more":false}',
                    headers={"Syncyard-Command-Id": command_id},
                )
                await msg.ack()
    # Every ack is sent by now: flushed and closed, not drained (draining the pull
    # subscription timed out, and nats-py logged it as an error on every run).
    with contextlib.suppress(Exception):
        await nc.flush()
    await nc.close()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:4]))

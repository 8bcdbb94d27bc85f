"""`syncyard`: the command line. `up` runs everything; `send` sends a command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
import traceback
import uuid
from collections.abc import Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from aiohttp import web
from nats.aio.client import Client as NatsClient

from events.asyncapi import write_asyncapi
from events.codec import CommandDecodeError, decode_command, decode_result, encode
from events.commands import Command
from events.results import CommandResult
from events.schema import write_schemas
from events.subjects import (
    HEADER_COMMAND_ID,
    HEADER_MSG_ID,
    HEADER_SPACE_ID,
    command_msg_id,
    command_subject,
    result_subject,
    rpc_subject,
    space_header,
)
from infra import audit_cli, saga_audit
from infra.audit import parse_time
from infra.bootstrap import (
    ALL_COMPONENTS,
    API_TOKEN_FILE,
    ConfigurationError,
    Runtime,
    cipher_key_for,
    open_runtime,
    run_components,
)
from infra.config import (
    DEFAULT_STATE_DIR,
    Settings,
    load_settings,
    mask_url,
    mask_urls,
    refusals,
)
from infra.demos import region_demos
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.log_access import DATABASE_URL_FILE, StoreNotFoundError
from infra.nats_credentials import NatsCredential, connect_options, credential_variable
from infra.nats_roles import (
    PASSWORDS_FILE,
    RELAY,
    ROLES,
    UPSTREAM,
    WORKER,
    analytics_reader,
    passwords_config,
    roles,
    server_config,
    upstream_tenant,
)
from infra.replay_cli import UnknownProjectionError, run_replay
from infra.telemetry import setup_logging, setup_metrics, setup_tracing
from infra.waiting import StoppedWhileStartingError

log = logging.getLogger("syncyard")

EXAMPLE_ACCOUNT = "acct-demo-1"
# The sandbox person behind the demo links (the Plaid and MX keys name them).
EXAMPLE_PERSON = "demo-1"
DEFAULT_SCENARIO = "calm"
# `up` and `serve`'s exit status when a stop signal came before they were connected.
STOPPED_WHILE_STARTING = 3
# 128 + SIGPIPE: what a shell reports for a program whose output's reader went away.
READER_GONE = 141


def _install_stop_signals(stop: asyncio.Event) -> None:
    # SIGHUP too: a closed terminal or a lost ssh session stops us in order, as
    # Ctrl-C does, rather than killing us with the embedded servers left to stop.
    # Unless it is ignored: `nohup syncyard up` (or a supervisor) asks us to outlive
    # the terminal, and a handler would undo that.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        loop.add_signal_handler(sig, stop.set)


def _sandbox_app(scenario: str) -> web.Application:
    """The provider sandbox's app; it is a package of its own, outside syncyard's wheel."""
    try:
        from sandbox.app import create_sandbox_app  # noqa: PLC0415 - optional tool
    except ImportError as exc:
        raise ConfigurationError(
            "the provider sandbox is not installed: `pip install -e ./sandbox` from a checkout "
            "(`make install` does it), or point SYNCYARD_<PROVIDER>_BASE_URL at real providers"
        ) from exc
    return create_sandbox_app(scenario=scenario)


def _scenario_names() -> list[str]:
    from sandbox.scenarios import available  # noqa: PLC0415 - `up` has loaded the sandbox

    return available()


async def _serve_sandbox(stack: contextlib.AsyncExitStack, port: int) -> str:
    runner = web.AppRunner(_sandbox_app(DEFAULT_SCENARIO), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}"


def _banner(runtime: Runtime, nats_url: str, database_url: str, sandbox_url: str) -> str:
    run = uuid.uuid4().hex[:6]  # fresh command ids on every start
    account = f'"space_id":"demo","account_id":"{EXAMPLE_ACCOUNT}"'
    at_plaid = (
        f'{{"command_id":"reg-plaid-{run}",{account},"provider":"plaid",'
        f'"item_id":"item-{EXAMPLE_PERSON}","access_token":"access-sandbox-{EXAMPLE_PERSON}"}}'
    )
    at_mx = (
        f'{{"command_id":"reg-mx-{run}",{account},"provider":"mx",'
        f'"item_id":"MBR-{EXAMPLE_PERSON}","access_token":"USR-{EXAMPLE_PERSON}"}}'
    )

    def sync(n: int) -> str:
        return f'{{"command_id":"sync-{n}-{run}",{account}}}'

    link_id = f"link-{run}"
    link = (
        f'{{"command_id":"{link_id}","space_id":"demo","account_id":"acct-demo-2",'
        f'"institution_id":"ins_109508","region":"US"}}'
    )
    exe = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "syncyard"
    prefix = ".venv/bin/" if exe == "syncyard" and Path(".venv/bin/syncyard").exists() else ""
    send = f"{prefix}syncyard send"
    plaid_down = (
        f"curl -X POST {sandbox_url}/_admin/faults -d "
        """'{"provider": "plaid", "endpoint": "/transactions/sync", "status": 500, """
        """"error_code": "INTERNAL_SERVER_ERROR"}'"""
    )
    feed = f"{runtime.http_url}/v1/accounts/{EXAMPLE_ACCOUNT}/transactions/changes?space_id=demo"
    # Every route but /healthz and /readyz takes a bearer token: `up` made a local admin
    # one unless SYNCYARD_API_TOKENS(_FILE) names some (then the reader pastes their own).
    if runtime.settings.api_tokens:
        token_is = "export SYNCYARD_TOKEN=<a token of SYNCYARD_API_TOKENS>"  # noqa: S105
    else:
        token_file = runtime.settings.state_dir / API_TOKEN_FILE
        token_is = f"export SYNCYARD_TOKEN=$(cat {token_file})   (local admin, 0600)"
    auth = 'curl -H "Authorization: Bearer $SYNCYARD_TOKEN"'
    # `send`, `audit` and `replay` find this run through its state folder: another
    # terminal must be told where it is unless it is the default one there.
    other_terminal = [f"cd {Path.cwd()}", token_is.split("   ")[0]]
    if runtime.settings.state_dir != Path(DEFAULT_STATE_DIR).resolve():
        other_terminal.append(f"export SYNCYARD_STATE_DIR={runtime.settings.state_dir}")
    first = "".join(f"\n  {line}" for line in other_terminal)
    return f"""
syncyard is running.
  HTTP API      {runtime.http_url}/healthz · /readyz (open); every other route takes a token:
                {token_is}
                {auth} '{runtime.http_url}/v1/providers/health?region=US'
                {auth} '{runtime.http_url}/v1/connections/{EXAMPLE_ACCOUNT}/history?space_id=demo'
                /v1/metrics/overview · /v1/openapi.json (every route, and who may call it)
                /v1/sagas?status=needs_attention (clean-ups stuck)
  NATS          {nats_url}   (commands: syncyard.cmd.<op>, events: syncyard.evt.>)
                {_nats_login(runtime.settings)}
  PostgreSQL    {database_url}
  sandbox       {sandbox_url}/<provider> for plaid, mx, finicity, belvo, bitso, chain
                scenario "{DEFAULT_SCENARIO}" (others: {", ".join(_scenario_names())}), e.g.
                curl -X PUT {sandbox_url}/_admin/scenario -d '{{"name": "plaid-outage"}}'
                one bank per person behind every provider: {sandbox_url}/_admin/truth/<person>
  state         {runtime.settings.state_dir}

Every command below runs in another terminal, after these:{first}

Keep one account's transactions coming through a Plaid outage: link it at
Plaid and at MX (one person, "{EXAMPLE_PERSON}", behind both), sync, take Plaid down
while the bank moves on, sync again (it fails over to MX and delivers only
what is new), bring Plaid back, sync, and read the feed:
  {send} connection.register '{at_plaid}'
  {send} connection.register '{at_mx}'
  {send} sync.transactions '{sync(1)}'
  {plaid_down}
  curl -X POST {sandbox_url}/_admin/truth/{EXAMPLE_PERSON}/advance -d '{{"days": 3}}'
  {send} sync.transactions '{sync(2)}'
  curl -X DELETE {sandbox_url}/_admin/faults
  curl -X POST {sandbox_url}/_admin/truth/{EXAMPLE_PERSON}/advance -d '{{"days": 2}}'
  {send} sync.transactions '{sync(3)}'
  {auth} '{feed}&since=0'
  curl {sandbox_url}/_admin/truth/{EXAMPLE_PERSON}    (the bank itself, to compare)

Or link an account end to end (the link saga): start it (its result names the
saga_id), fetch the link_token the person's app would open (operators and admins of
the space may), finish as the person would, and audit it:
  {send} link.start '{link}'
  {auth} {runtime.http_url}/v1/sagas/<saga_id>/link
  curl -X POST {sandbox_url}/_admin/links/plaid/complete -d '{{"link_token": "<link_token>"}}'
  {prefix}syncyard audit saga demo/{link_id}
  {prefix}syncyard audit connection demo/acct-demo-2 · {prefix}syncyard replay --verify
{region_demos(send=send, auth=auth, api=str(runtime.http_url), sandbox=sandbox_url, run=run)}
Ctrl-C stops everything.
"""


def _refuse_unsafe(
    settings: Settings, *, serves_api: bool = True, calls_providers: bool = True
) -> None:
    """Fail closed: outside the embedded mode, refuse settings that would leak or lose data.

    Every reason is said at once, the API's tokens included, before anything connects.
    """
    reasons = refusals(settings, calls_providers=calls_providers)
    if serves_api and not settings.embedded and not settings.api_tokens:
        reasons.append(
            "the HTTP API needs API tokens: set SYNCYARD_API_TOKENS (NAME:ROLE:SPACES:TOKEN, "
            "comma-separated) or SYNCYARD_API_TOKENS_FILE (one entry a line)"
        )
    if reasons:
        raise ConfigurationError(
            "refusing to start outside the embedded mode (NATS_URL or DATABASE_URL is set):\n  - "
            + "\n  - ".join(reasons)
        )
    if settings.allow_insecure_providers and not settings.embedded:
        log.warning("SYNCYARD_INSECURE_PROVIDERS is set: http:// provider URLs are accepted")


async def _up(settings: Settings) -> None:
    _refuse_unsafe(settings)
    stop = asyncio.Event()
    _install_stop_signals(stop)
    setup_tracing(settings.otlp_endpoint)
    setup_metrics(settings.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        nats_url = settings.nats_url
        database_url = settings.database_url
        if not nats_url:
            embedded_nats = await stack.enter_async_context(EmbeddedNats(settings.state_dir))
            nats_url = embedded_nats.url
            # Every connection logs in as its role, with the passwords the server made.
            settings = msgspec.structs.replace(settings, nats_credentials=embedded_nats.credentials)
            # `syncyard send` in another terminal finds the embedded server here.
            url_file = settings.state_dir / "nats.url"
            url_file.write_text(nats_url + "\n")
            stack.callback(url_file.unlink, missing_ok=True)
        if not database_url:
            database_url = (
                await stack.enter_async_context(EmbeddedPostgres(settings.state_dir))
            ).url
            # `syncyard replay` and `audit` in another terminal find the database here.
            db_file = settings.state_dir / DATABASE_URL_FILE
            db_file.write_text(database_url + "\n")
            stack.callback(db_file.unlink, missing_ok=True)
        sandbox_url = await _serve_sandbox(stack, settings.sandbox_port)
        runtime = await stack.enter_async_context(
            open_runtime(
                settings, nats_url, database_url, cipher_key=cipher_key_for(settings), stop=stop
            )
        )
        assert database_url is not None
        followers = await _start_followers(settings, nats_url, database_url)
        # Stopped before the servers they use (the stack unwinds last in, first out).
        stack.push_async_callback(_stop_followers, followers)
        watcher = asyncio.create_task(_stop_when_gone(followers, stop))
        stack.callback(watcher.cancel)
        await run_components(
            runtime,
            ALL_COMPONENTS - set(FOLLOWERS),
            stop,
            on_ready=lambda rt: _say_up(rt, nats_url, database_url, sandbox_url),
        )
    print("syncyard stopped cleanly.", flush=True)


# `up` runs the relay and the projector in a process of their own: two processes
# (two GILs) on two cores measured faster than one (docs/BENCHMARKS.md, issue #13).
FOLLOWERS = ("relay", "projector")
# The logins `up` may hold (`SYNCYARD_NATS_<ROLE>_…`): its followers get the relay's only.
_NATS_CREDENTIAL_PREFIX = "SYNCYARD_NATS_"


def _followers_env(settings: Settings, nats_url: str, database_url: str) -> dict[str, str]:
    """What `serve --components relay,projector` needs to join `up`'s servers.

    Of NATS logins, the relay's alone (the projector uses none): a process that
    only publishes events has no business holding the worker's, which reads
    commands and their access tokens, nor anybody else's.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_NATS_CREDENTIAL_PREFIX)
    }
    env |= {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "SYNCYARD_CIPHER_KEY": cipher_key_for(settings),
    }
    credential = settings.nats_credentials.get(RELAY)
    if credential is not None:
        if credential.user:
            env[credential_variable(RELAY, "USER")] = credential.user
        if credential.password_file is not None:
            env[credential_variable(RELAY, "PASSWORD_FILE")] = str(credential.password_file)
        if credential.creds_file is not None:
            env[credential_variable(RELAY, "CREDS_FILE")] = str(credential.creds_file)
    return env


async def _start_followers(
    settings: Settings, nats_url: str, database_url: str
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra.cli",
        "serve",
        "--components",
        ",".join(FOLLOWERS),
        "--until-stdin-closes",
        env=_followers_env(settings, nats_url, database_url),
        # Never written: the kernel closes it when `up` ends, however it ends
        # (SIGKILL included), and the followers stop on that end of file.
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
    except TimeoutError:
        line = b""
    if line.strip() != b"ready":
        await _stop_followers(proc)
        raise ConfigurationError("the relay and projector process did not start (its log above)")
    return proc


async def _stop_when_gone(followers: asyncio.subprocess.Process, stop: asyncio.Event) -> None:
    """A followers' process that dies takes the rest down: nothing would be relayed."""
    assert followers.stdout is not None
    while await followers.stdout.readline():
        pass
    await followers.wait()
    if not stop.is_set():
        log.error("the relay and projector process exited (%s): stopping", followers.returncode)
        stop.set()


async def _stop_followers(proc: asyncio.subprocess.Process) -> None:
    # Ctrl-C reaches it too (the terminal signals the whole process group); a
    # SIGTERM to `up` alone does not, hence ours.
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _serve(
    settings: Settings, components: Sequence[str], *, until_stdin_closes: bool = False
) -> None:
    if not (settings.nats_url and settings.database_url):
        raise ConfigurationError("serve needs NATS_URL and DATABASE_URL; `syncyard up` embeds them")
    _refuse_unsafe(
        settings,
        serves_api="api" in components,
        calls_providers=not set(components) <= set(FOLLOWERS),
    )
    stop = asyncio.Event()
    _install_stop_signals(stop)
    parent_watch = (
        asyncio.create_task(_stop_when_stdin_closes(stop)) if until_stdin_closes else None
    )
    setup_tracing(settings.otlp_endpoint)
    setup_metrics(settings.otlp_endpoint)
    try:
        async with open_runtime(
            settings,
            settings.nats_url,
            settings.database_url,
            cipher_key=cipher_key_for(settings),
            nats_role=RELAY if set(components) <= set(FOLLOWERS) else WORKER,
            stop=stop,
        ) as runtime:
            await run_components(runtime, components, stop, on_ready=lambda _: _say_ready(stop))
    finally:
        if parent_watch is not None:
            parent_watch.cancel()


async def _stop_when_stdin_closes(stop: asyncio.Event) -> None:
    """Stop at the end of stdin: `up` holds its other end, so that is `up` gone."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (ValueError, OSError):  # no stdin at all
        mode = 0
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        # Nothing to watch (a file, a terminal, /dev/null: uvloop aborts on a file), and
        # unwatched it could outlive its parent: refuse to run rather than risk that.
        log.error("--until-stdin-closes: standard input is not a pipe: stopping")
        stop.set()
        return
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()
    if not stop.is_set():
        log.warning("standard input closed (the process that started this one is gone): stopping")
        stop.set()


def _say_up(runtime: Runtime, nats_url: str, database_url: str, sandbox_url: str) -> None:
    # Masked: the banner is printed, and a URL's password must never be.
    print(_banner(runtime, mask_url(nats_url), mask_url(database_url), sandbox_url), flush=True)


def _say_ready(stop: asyncio.Event) -> None:
    # `up` reads this line; once it is gone (stop already set), nobody does.
    if not stop.is_set():
        print("ready", flush=True)


async def _send(settings: Settings, op: str, payload: str, *, rpc: bool, timeout: float) -> int:
    try:
        cmd = decode_command(op, payload.encode())
    except CommandDecodeError as exc:
        print(f"refused before sending: {exc}", file=sys.stderr)
        return 2
    url = settings.nats_url or _embedded_nats_url(settings)
    try:
        # One try: a person waits on this, and a refused login will not change its mind.
        nc = await nats.connect(
            url,
            allow_reconnect=False,
            error_cb=_quiet,
            **connect_options(UPSTREAM, _upstream_credential(settings)),
        )
    except (nats.errors.Error, OSError) as exc:
        said = str(exc) or type(exc).__name__
        print(
            f"cannot connect to NATS at {mask_url(url)} as {UPSTREAM}: {said}"
            f" (its login: {credential_variable(UPSTREAM, 'USER')} and "
            f"{credential_variable(UPSTREAM, 'PASSWORD_FILE')} or _CREDS_FILE)",
            file=sys.stderr,
        )
        return 1
    try:
        result = await (_request(nc, cmd, timeout) if rpc else _publish_and_wait(nc, cmd, timeout))
    except nats.errors.NoRespondersError:
        print(
            f"nothing answers {rpc_subject(cmd.op)}: is syncyard running on this NATS?",
            file=sys.stderr,
        )
        return 1
    except nats.js.errors.NoStreamResponseError:
        # Also the first seconds of `make run`: NATS is up before syncyard declares them.
        print(
            f"no stream takes {command_subject(cmd.op)} yet: syncyard may still be starting "
            "(it declares its streams then), or is not running on this NATS; try again",
            file=sys.stderr,
        )
        return 1
    except (TimeoutError, nats.errors.TimeoutError):
        print(
            f"no result for {cmd.command_id} within {timeout:g} s: syncyard may be busy or "
            "down; the command stays queued, and sending it again with the same command_id "
            "answers its result once it has one",
            file=sys.stderr,
        )
        return 1
    finally:
        await nc.drain()
    print(msgspec.json.format(encode(result), indent=2).decode())
    return 0 if result.success else 1


async def _quiet(_: Exception) -> None:
    """nats-py logs connection errors with a traceback; `_send` says them in one line."""


async def _request(nc: NatsClient, cmd: Command, timeout: float) -> CommandResult:
    reply = await nc.request(rpc_subject(cmd.op), encode(cmd), timeout=timeout)
    return decode_result(reply.data)


async def _publish_and_wait(nc: NatsClient, cmd: Command, timeout: float) -> CommandResult:
    answers = await nc.subscribe(result_subject(cmd.op))
    ack = await nc.jetstream().publish(
        command_subject(cmd.op),
        encode(cmd),
        headers={HEADER_MSG_ID: command_msg_id(cmd.space_id, cmd.command_id)},
    )
    if ack.duplicate:
        # NATS dropped the resend (only a nats-server older than 2.14 keeps a
        # duplicate window on the command queue, infra/streams.py), so no result
        # will come on the queue: ask for the original one directly (nothing is redone).
        print(f"already accepted (command id {cmd.command_id}): its original result follows")
        await answers.unsubscribe()
        return await _request(nc, cmd, timeout)
    print(f"accepted: stream {ack.stream} seq {ack.seq}")
    async with asyncio.timeout(timeout):
        while True:
            msg = await answers.next_msg(timeout=timeout)
            headers = msg.headers or {}
            if headers.get(HEADER_COMMAND_ID) == cmd.command_id and headers.get(
                HEADER_SPACE_ID
            ) == space_header(cmd.space_id):
                return decode_result(msg.data)


def _upstream_credential(settings: Settings) -> NatsCredential | None:
    """`send` is an upstream client: the configured login, else the embedded server's."""
    if UPSTREAM in settings.nats_credentials:
        return settings.nats_credentials[UPSTREAM]
    password_file = settings.state_dir / "nats-auth" / f"{UPSTREAM}.password"
    if not settings.nats_url and password_file.exists():
        return NatsCredential(user=ROLES[UPSTREAM].user, password_file=password_file)
    return None


def _nats_login(settings: Settings) -> str:
    """How an upstream service logs in: the banner names the file, never the password."""
    credential = settings.nats_credentials.get(UPSTREAM)
    if credential is None or credential.password_file is None:
        return "(upstream: the login your NATS gave it)"
    return (
        f"upstream logs in as user {ROLES[UPSTREAM].user!r}, password in "
        f"{credential.password_file} (0600)"
    )


def _embedded_nats_url(settings: Settings) -> str:
    url_file = settings.state_dir / "nats.url"
    if url_file.exists():
        return url_file.read_text().strip()
    raise ConfigurationError(
        f"no running syncyard found ({url_file} is missing): start one with `make run`, "
        "or set NATS_URL to the NATS server it uses"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncyard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="embedded NATS + PostgreSQL + sandbox + every component")
    serve = sub.add_parser("serve", help="run components against NATS_URL and DATABASE_URL")
    serve.add_argument(
        "--components",
        default=",".join(sorted(ALL_COMPONENTS)),
        help="comma-separated: worker, relay, projector, api",
    )
    serve.add_argument(
        "--until-stdin-closes",
        action="store_true",
        help="also stop when standard input, a pipe, reaches its end (how `up` has its "
        "second process die with it)",
    )
    send = sub.add_parser("send", help="send one command and print its result")
    send.add_argument("op", help="e.g. sync.transactions")
    send.add_argument("json", help="the command as JSON, or @file")
    send.add_argument("--rpc", action="store_true", help="request/reply instead of the queue")
    send.add_argument("--timeout", type=float, default=30.0)
    schema = sub.add_parser(
        "schema", help="write the contract's JSON Schemas and its AsyncAPI document"
    )
    schema.add_argument("--out", type=Path, default=Path("schema"))
    nats_config = sub.add_parser(
        "nats-config",
        help="print nats-server's accounts and per-role permissions for syncyard",
    )
    nats_config.add_argument(
        "--passwords-template",
        action="store_true",
        help=f"print instead the template of the included {PASSWORDS_FILE}",
    )
    nats_config.add_argument(
        "--analytics-reader",
        action="append",
        default=[],
        type=_reader,
        metavar="NAME[=CONSUMER,...]",
        help="a reader of the event stream with its own login (user analytics-NAME) and "
        "consumers (default: analytics-NAME), which no other login may touch; repeatable",
    )
    nats_config.add_argument(
        "--upstream-tenant",
        action="append",
        default=[],
        type=_tenant,
        metavar="NAME=SPACE[,SPACE...]",
        help="an upstream login (user upstream-NAME) that sends only these spaces' commands, "
        "on syncyard.space.<space>.cmd.>, reads only their results, on "
        "syncyard.space.<space>.result.>, and has no RPC; repeatable",
    )
    sandbox = sub.add_parser("sandbox", help="serve the provider sandbox alone")
    sandbox.add_argument("--port", type=int, default=8099)
    sandbox.add_argument("--scenario", default=DEFAULT_SCENARIO, help="a file in scenarios/")
    replay = sub.add_parser("replay", help="rebuild read models from the event store")
    replay.add_argument("names", nargs="*", metavar="NAME", help="read models (default: all)")
    replay_mode = replay.add_mutually_exclusive_group()
    replay_mode.add_argument("--from-zero", action="store_true", help="rebuild, then swap in")
    replay_mode.add_argument("--verify", action="store_true", help="report rows that differ")
    # `audit <subject>`: each subject names its function with set_defaults(audit=...).
    audit = sub.add_parser("audit", help="an aggregate's timeline and state as of a time")
    audit_of = audit.add_subparsers(dest="subject", required=True)
    audit_connection = audit_of.add_parser("connection", help="a connection's events and state")
    audit_connection.add_argument("id", help="the connection's UUID, or SPACE_ID/ACCOUNT_ID")
    audit_connection.add_argument("--as-of", type=_time, metavar="TIME", help="ISO 8601")
    audit_connection.set_defaults(audit=audit_cli.audit_connection)
    audit_breaker = audit_of.add_parser("breaker", help="a provider breaker's transitions")
    audit_breaker.add_argument("provider")
    audit_breaker.add_argument("region")
    audit_breaker.add_argument(
        "--institution",
        metavar="ID",
        help="the provider's breaker at this bank (syncyard's id); absent: provider-wide",
    )
    audit_breaker.add_argument("--as-of", type=_time, metavar="TIME", help="ISO 8601")
    audit_breaker.set_defaults(audit=audit_cli.audit_breaker)
    audit_saga = audit_of.add_parser("saga", help="a link or reconnect saga's steps")
    audit_saga.add_argument("id", help="the saga's UUID, or SPACE_ID/COMMAND_ID that started it")
    audit_saga.add_argument("--json", action="store_true", help="the HTTP API's JSON")
    audit_saga.set_defaults(audit=saga_audit.audit_saga)
    return parser


def _nats_config(
    *,
    passwords_template: bool,
    readers: Sequence[tuple[str, tuple[str, ...]]] = (),
    tenants: Sequence[tuple[str, tuple[str, ...]]] = (),
) -> str:
    """What `syncyard nats-config` prints: the production configuration, or its passwords."""
    table = roles(dict(readers), dict(tenants))
    if passwords_template:
        hashes = {name: "<bcrypt hash: nats server passwd>" for name in table}
        return passwords_config(hashes, table)
    return server_config(table=table)


def _print_nats_config(args: argparse.Namespace) -> int:
    try:
        config = _nats_config(
            passwords_template=args.passwords_template,
            readers=args.analytics_reader,
            tenants=args.upstream_tenant,
        )
    except ValueError as exc:  # two readers claiming one consumer
        print(f"syncyard: {exc}", file=sys.stderr)
        return 2
    print(config, end="")
    return 0


def _tenant(text: str) -> tuple[str, tuple[str, ...]]:
    """`acme=acme-eu,acme-us`: a tenant and the spaces whose commands and results are its."""
    name, _, spaces = text.partition("=")
    owned = tuple(space for space in spaces.split(",") if space)
    try:
        upstream_tenant(name, owned)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, owned


def _reader(text: str) -> tuple[str, tuple[str, ...]]:
    """`ledger` or `ledger=ledger-live,ledger-backfill`: a reader and the consumers it owns."""
    name, _, consumers = text.partition("=")
    owned = tuple(c for c in consumers.split(",") if c)
    try:
        analytics_reader(name, owned)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, owned


def _time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _masking_excepthook(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """An unexpected crash's traceback, with every URL's password masked (a driver's
    error may quote the URL it was given)."""
    text = "".join(traceback.format_exception(kind, exc, tb))
    sys.stderr.write(mask_urls(text))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sys.excepthook = _masking_excepthook
    setup_logging()
    settings = load_settings()
    try:
        code = _run_command(args, settings)
        sys.stdout.flush()  # here, where a reader gone (below) can still be told apart
    except BrokenPipeError:
        # Whoever read our output went away (`syncyard send … | head -1`): nothing is
        # wrong on our side, and nobody is left to tell. Exit as a shell's SIGPIPE
        # does, without the traceback, and without a second one at exit's flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return READER_GONE
    except (ConfigurationError, StoreNotFoundError, UnknownProjectionError) as exc:
        print(f"syncyard: {mask_urls(str(exc))}", file=sys.stderr)
        return 2
    except StoppedWhileStartingError as exc:
        # A stop signal during the start: nothing ran, nothing is left to finish.
        print(f"syncyard: {mask_urls(str(exc))}; nothing was started", file=sys.stderr)
        return STOPPED_WHILE_STARTING
    except KeyboardInterrupt:
        return 130
    return code


def _run_command(args: argparse.Namespace, settings: Settings) -> int:
    """The chosen subcommand; its exit status."""
    code = 0
    if args.command == "up":
        _run_service(_up(settings))
    elif args.command == "serve":
        components = [c for c in args.components.split(",") if c]
        _run_service(_serve(settings, components, until_stdin_closes=args.until_stdin_closes))
    elif args.command == "send":
        payload = Path(args.json[1:]).read_text() if args.json.startswith("@") else args.json
        code = asyncio.run(_send(settings, args.op, payload, rpc=args.rpc, timeout=args.timeout))
    elif args.command == "schema":
        for path in [*write_schemas(args.out), write_asyncapi(args.out / "asyncapi.json")]:
            print(path)
    elif args.command == "nats-config":
        code = _print_nats_config(args)
    elif args.command == "sandbox":
        web.run_app(_sandbox_app(args.scenario), host="127.0.0.1", port=args.port)
    elif args.command == "replay":
        code = asyncio.run(
            run_replay(settings, args.names, from_zero=args.from_zero, check=args.verify)
        )
    elif args.command == "audit":
        code = asyncio.run(audit_cli.run_audit(settings, args.audit, args))
    return code


def _run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived process on uvloop when it is installed (issue #13: it measured
    cheaper per command, docs/BENCHMARKS.md); SYNCYARD_EVENT_LOOP=asyncio keeps the
    standard loop, for comparing the two."""
    if os.environ.get("SYNCYARD_EVENT_LOOP") != "asyncio":
        try:
            import uvloop  # noqa: PLC0415 - optional: absent, the standard loop runs
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


if __name__ == "__main__":
    sys.exit(main())

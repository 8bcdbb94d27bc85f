"""How syncyard's connections log in to NATS: a credential per role, read from files.

Settings hold where a role's secret lives, never the secret: a password file
or a `.creds` file (NATS JWT and nkey, for servers in operator mode), read
when the connection is opened. The embedded server makes its own (random
passwords in 0600 files under the state folder); with `NATS_URL` they come
from `SYNCYARD_NATS_<ROLE>_USER`, `_PASSWORD_FILE` and `_CREDS_FILE`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from infra.nats_roles import CLIENT_ROLES, PASSWORDS_FILE, ROLES, Role, passwords_config


class NatsCredential(msgspec.Struct, frozen=True, kw_only=True):
    """Where one role's login is kept; empty logs in anonymously (a server without auth)."""

    user: str | None = None
    password_file: Path | None = None
    creds_file: Path | None = None


def connect_options(role: str, credential: NatsCredential | None) -> dict[str, Any]:
    """`nats.connect` keyword arguments for a connection acting as `role`.

    The inbox prefix is the role's even without a credential: with permissions
    on, a role may read only its own inbox.
    """
    options: dict[str, Any] = {"inbox_prefix": ROLES[role].inbox_prefix}
    if credential is None:
        return options
    if credential.creds_file is not None:
        options["user_credentials"] = str(credential.creds_file)
    if credential.password_file is not None:
        options["user"] = credential.user or ROLES[role].user
        options["password"] = credential.password_file.read_text().strip()
    return options


def credential_variable(role: str, field: str) -> str:
    """`SYNCYARD_NATS_WORKER_PASSWORD_FILE` and the like."""
    return f"SYNCYARD_NATS_{role.upper()}_{field}"


def credentials_from_env(env: Mapping[str, str]) -> dict[str, NatsCredential]:
    """The roles whose credentials the environment names (for a NATS_URL server)."""
    found = {}
    for role in CLIENT_ROLES:
        user = env.get(credential_variable(role, "USER")) or None
        password_file = env.get(credential_variable(role, "PASSWORD_FILE")) or None
        creds_file = env.get(credential_variable(role, "CREDS_FILE")) or None
        if user or password_file or creds_file:
            found[role] = NatsCredential(
                user=user,
                password_file=Path(password_file) if password_file else None,
                creds_file=Path(creds_file) if creds_file else None,
            )
    return found


def _write_secret(path: Path, text: str) -> None:
    # Created 0600 in one step: no moment where another user could read it.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def embedded_credentials(
    auth_dir: Path, table: Mapping[str, Role] | None = None
) -> dict[str, NatsCredential]:
    """Every role's password, made once into `auth_dir` (0700), and nats-server's copy of them.

    Kept across runs, so a client holding a password file keeps working after a
    restart; a role added since gets its password then.
    """
    auth_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    auth_dir.chmod(0o700)
    known = table or ROLES
    passwords = {}
    credentials = {}
    for role in known:
        path = auth_dir / f"{role}.password"
        if not path.exists():
            _write_secret(path, secrets.token_urlsafe(32) + "\n")
        passwords[role] = path.read_text().strip()
        credentials[role] = NatsCredential(user=known[role].user, password_file=path)
    _write_secret(auth_dir / PASSWORDS_FILE, passwords_config(passwords, known))
    return credentials

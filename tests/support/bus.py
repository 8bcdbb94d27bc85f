"""NATS logins for tests and benchmarks: each server's credentials, by URL and role.

The embedded NATS runs with syncyard's per-role permissions, so every client
connects as a role (`infra/nats_roles.py`): upstream services as `upstream`,
event readers as `analytics`, clean-ups as `admin`. Whoever starts a server
`register`s its credentials under its URL; helpers then need only the URL. A
server nobody registered (`SYNCYARD_TEST_NATS_URL` without auth) is joined
anonymously, with the role's inbox prefix.
"""

from __future__ import annotations

from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from infra.nats_credentials import NatsCredential, connect_options, credential_variable
from infra.nats_roles import ADMIN, ANALYTICS, RELAY, UPSTREAM, WORKER

__all__ = ["ADMIN", "ANALYTICS", "RELAY", "UPSTREAM", "WORKER"]

_by_url: dict[str, dict[str, NatsCredential]] = {}


def register(url: str, credentials: dict[str, NatsCredential]) -> None:
    """Remember the logins of the server at `url` (its `EmbeddedNats.credentials`)."""
    _by_url[url] = dict(credentials)


def credentials(url: str) -> dict[str, NatsCredential]:
    """Every role's login on the server at `url`; empty for a server without auth."""
    return dict(_by_url.get(url, {}))


def options(url: str, role: str) -> dict[str, Any]:
    """`nats.connect` keyword arguments to join the server at `url` as `role`."""
    return connect_options(role, _by_url.get(url, {}).get(role))


async def connect(url: str, role: str = UPSTREAM, **kwargs: Any) -> NatsClient:
    """A connection to the server at `url` as `role` (upstream unless told)."""
    return await nats.connect(url, **options(url, role), **kwargs)


def env(url: str) -> dict[str, str]:
    """The variables a `syncyard` process needs to log in to the server at `url`."""
    found: dict[str, str] = {}
    for role, credential in _by_url.get(url, {}).items():
        if credential.user:
            found[credential_variable(role, "USER")] = credential.user
        if credential.password_file:
            found[credential_variable(role, "PASSWORD_FILE")] = str(credential.password_file)
    return found

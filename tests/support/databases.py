"""Databases made for one test or one benchmark run, on a server the caller names."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import asyncpg


async def create_database(admin_url: str, prefix: str) -> str:
    """A new, empty database on `admin_url`'s server; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(admin_url)
    try:
        # The name is ours (hex), so interpolating it cannot inject anything.
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


async def drop_database(admin_url: str, database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(admin_url)
    try:
        # FORCE: a test that leaked a connection must not make the next one fail.
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()

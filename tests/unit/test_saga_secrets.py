"""Secrets around sagas: nothing public names a token, the store's key is required, the
crash hook is inert unless asked."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from events.commands import CompleteLink, RegisterConnection
from events.connection import CONNECTION_EVENT_TYPES
from events.credentials import PRIVATE_EVENT_TYPES, CredentialStored, PublicTokenReceived
from events.saga import SAGA_EVENT_TYPES
from infra.bootstrap import ConfigurationError, cipher_key_for
from infra.config import Settings
from sagas.runner import CrashHook

pytestmark = pytest.mark.unit

SECRET_FIELDS = {"access_token", "public_token"}


def test_no_published_event_type_has_a_field_for_a_token() -> None:
    for cls in (*SAGA_EVENT_TYPES, *CONNECTION_EVENT_TYPES):
        assert not SECRET_FIELDS & set(cls.__struct_fields__), cls.__name__
    # The types that do carry one are exactly those the relay never publishes.
    assert CredentialStored in PRIVATE_EVENT_TYPES
    assert PublicTokenReceived in PRIVATE_EVENT_TYPES


def test_a_completion_command_never_shows_its_public_token() -> None:
    cmd = CompleteLink(
        command_id="c-1",
        space_id="s",
        account_id="a",
        link_command_id="link-1",
        public_token="public-sandbox-secret",
    )
    assert "public-sandbox-secret" not in repr(cmd) and "public-sandbox-secret" not in str(cmd)
    assert msgspec.json.decode(msgspec.json.encode(cmd), type=CompleteLink) == cmd
    register = RegisterConnection(
        command_id="r-1",
        space_id="s",
        account_id="a",
        provider="plaid",
        item_id="i",
        access_token="access-sandbox-secret",
    )
    assert "access-sandbox-secret" not in repr(register)


def _settings(tmp_path: Path, **fields: str | None) -> Settings:
    base: dict[str, object] = {"nats_url": None, "database_url": None, "state_dir": tmp_path}
    return Settings(**{**base, **fields})  # type: ignore[arg-type]


def test_external_servers_without_a_cipher_key_refuse_to_start(tmp_path: Path) -> None:
    settings = _settings(tmp_path, nats_url="nats://x:4222", database_url="postgresql://x/db")
    with pytest.raises(ConfigurationError, match="SYNCYARD_CIPHER_KEY is required"):
        cipher_key_for(settings)


def test_the_embedded_mode_makes_one_key_and_keeps_it(tmp_path: Path) -> None:
    first = cipher_key_for(_settings(tmp_path))
    assert first == cipher_key_for(_settings(tmp_path))
    assert (tmp_path / "cipher.key").stat().st_mode & 0o777 == 0o600
    given = _settings(tmp_path, nats_url="nats://x", database_url="pg://x", cipher_key="k" * 44)
    assert cipher_key_for(given) == "k" * 44


def test_the_crash_hook_is_inert_unless_set_and_refuses_a_bad_spec() -> None:
    hook = CrashHook.from_env({})
    hook.at("exchange_token", "after_effect")  # would SIGKILL this test if armed
    assert (hook.step, hook.point) == (None, None)
    armed = CrashHook.from_env({"SYNCYARD_SAGA_CRASH_AT": "exchange_token:after_event"})
    assert (armed.step, armed.point) == ("exchange_token", "after_event")
    with pytest.raises(ValueError, match=r"STEP:after_effect\|after_event"):
        CrashHook("exchange_token:sometime")

"""Strict command decoding: every refusal has a stable code and a clear reason."""

from __future__ import annotations

import pytest

from events.codec import MAX_COMMAND_BYTES, CommandDecodeError, decode_command
from events.commands import SyncTransactions

pytestmark = pytest.mark.unit


def test_a_well_formed_command_decodes() -> None:
    cmd = decode_command(
        "sync.transactions", b'{"command_id":"c1","space_id":"s","account_id":"a","count":5}'
    )
    assert isinstance(cmd, SyncTransactions) and cmd.count == 5 and cmd.region == "US"


def test_a_contract_v1_sync_with_a_cursor_is_read_as_v2_without_it() -> None:
    v1 = (
        b'{"command_id":"c1","space_id":"s","account_id":"a","cursor":"plaid-cursor-9",'
        b'"start_date":"2025-01-01","end_date":"2025-01-31","count":50}'
    )

    cmd = decode_command("sync.transactions", v1)

    assert cmd == SyncTransactions(command_id="c1", space_id="s", account_id="a", count=50)


def test_a_v1_field_does_not_excuse_another_unknown_one() -> None:
    with pytest.raises(CommandDecodeError) as refused:
        decode_command(
            "sync.transactions",
            b'{"command_id":"c","space_id":"s","account_id":"a","cursor":"x","surprise":1}',
        )
    assert refused.value.code == "invalid_command" and "surprise" in refused.value.reason


@pytest.mark.parametrize(
    ("op", "payload", "code", "says"),
    [
        ("no.such.op", b"{}", "unknown_operation", "no.such.op"),
        ("sync.transactions", b"{not json", "malformed_json", "JSON"),
        (
            "sync.transactions",
            b'{"space_id":"s","account_id":"a"}',
            "invalid_command",
            "command_id",
        ),
        (
            "sync.transactions",
            b'{"command_id":"c","space_id":"s","account_id":"a","surprise":1}',
            "invalid_command",
            "surprise",
        ),
        (
            "sync.transactions",
            b'{"command_id":"has space","space_id":"s","account_id":"a"}',
            "invalid_command",
            "command_id",
        ),
        (
            "sync.transactions",
            b'{"command_id":"c","space_id":"s","account_id":"a","count":100000}',
            "invalid_command",
            "count",
        ),
        (
            "connection.register",
            b'{"command_id":"c","space_id":"s","account_id":"a"}',
            "invalid_command",
            "provider",
        ),
    ],
)
def test_bad_commands_are_refused_with_a_code_and_a_reason(
    op: str, payload: bytes, code: str, says: str
) -> None:
    with pytest.raises(CommandDecodeError) as refused:
        decode_command(op, payload)
    assert refused.value.code == code
    assert says in refused.value.reason


def test_an_oversize_command_is_refused_before_parsing() -> None:
    payload = b'{"command_id":"c","space_id":"s","account_id":"' + b"a" * MAX_COMMAND_BYTES + b'"}'
    with pytest.raises(CommandDecodeError) as refused:
        decode_command("sync.transactions", payload)
    assert refused.value.code == "payload_too_large"


def test_a_registration_never_shows_its_token_when_printed() -> None:
    cmd = decode_command(
        "connection.register",
        b'{"command_id":"c","space_id":"s","account_id":"a","provider":"plaid",'
        b'"item_id":"i","access_token":"access-sandbox-topsecret"}',
    )
    assert "topsecret" not in repr(cmd) and "topsecret" not in str(cmd)

"""Secrets in commands: every one is known, and a dead letter keeps only what is known
not to be one."""

from __future__ import annotations

import hashlib
import json
import typing

import pytest

from events.commands import (
    COMMAND_TYPES,
    DEAD_LETTER_FIELDS,
    SECRET_FIELDS,
    SecretToken,
    dead_letter_payload,
)

pytestmark = pytest.mark.unit


def _is_secret(hint: object) -> bool:
    return hint == SecretToken or SecretToken in typing.get_args(hint)


def test_every_field_typed_as_a_secret_token_is_listed_as_secret() -> None:
    typed = {
        name
        for cls in COMMAND_TYPES.values()
        for name, hint in typing.get_type_hints(cls, include_extras=True).items()
        if _is_secret(hint)
    }
    assert typed == SECRET_FIELDS


def test_the_dead_letter_allow_list_holds_every_plain_command_field_and_no_secret() -> None:
    assert not DEAD_LETTER_FIELDS & SECRET_FIELDS
    assert {"command_id", "op", "space_id", "account_id", "provider", "item_id"} <= (
        DEAD_LETTER_FIELDS
    )
    assert {"region", "institution_id"} <= DEAD_LETTER_FIELDS
    assert not {"webhook_url", "redirect_uri"} & DEAD_LETTER_FIELDS


def test_a_dead_letter_keeps_the_known_fields_of_a_command_and_drops_its_token() -> None:
    payload = b'{"command_id":"c","space_id":"s","provider":"plaid","access_token":"access-1"}'

    kept = json.loads(dead_letter_payload(payload))

    assert kept == {"command_id": "c", "space_id": "s", "provider": "plaid", "dropped_fields": 1}


@pytest.mark.parametrize(
    "payload",
    [
        b'{"command_id":"c","tokens":[{"accessToken":"access-sandbox-SECRET"}]}',
        b'{"command_id":"c","accessToken":["access-sandbox-SECRET"]}',
        b'{"command_id":"c","access\\u005ftoken":"access-sandbox-SECRET"}',
        b'{"command_id":"c","item_id":{"access_token":"access-sandbox-SECRET"}}',
        b'{"command_id":"c","products":["x",{"token":"access-sandbox-SECRET"}]}',
        b'{"command_id":"c","webhook_url":"https://h/?token=access-sandbox-SECRET"}',
        b'{"command_id":"c","item_id":"i","access_token":"access-sandbox-SECRET',  # cut short
        b"access_token=access-sandbox-SECRET",  # not JSON at all
        b'["access-sandbox-SECRET"]',  # JSON, not an object
    ],
)
def test_a_token_never_survives_in_a_dead_letter_however_it_is_spelt_or_nested(
    payload: bytes,
) -> None:
    letter = dead_letter_payload(payload)

    assert "SECRET" not in letter
    json.loads(letter)


def test_an_unreadable_payload_keeps_only_its_length_and_hash() -> None:
    payload = b'{"command_id":"c","access_token":"access-cut-sh'

    assert json.loads(dead_letter_payload(payload)) == {
        "unreadable_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def test_a_payload_over_the_size_limit_is_not_parsed() -> None:
    payload = b'{"command_id":"c"}'

    assert json.loads(dead_letter_payload(payload, max_bytes=8))["unreadable_bytes"] == 18

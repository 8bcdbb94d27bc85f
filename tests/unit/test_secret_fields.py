"""Secrets in commands: every one is known, and a dead letter never keeps its value."""

from __future__ import annotations

import typing

import pytest

from events.commands import COMMAND_TYPES, SECRET_FIELDS, SecretToken, redact_secrets

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


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            '{"op":"x","access_token":"access-sandbox-1","item_id":"i"}',
            '{"op":"x","access_token":"***","item_id":"i"}',
        ),
        ('{"public_token" : "public-1\\"still"}', '{"public_token" : "***"}'),
        (
            '{"command_id":"c","access_token":"access-cut-sh',
            '{"command_id":"c","access_token":"***"',
        ),
        ('{"command_id":"c","item_id":"i"}', '{"command_id":"c","item_id":"i"}'),
    ],
)
def test_secret_values_are_redacted_in_whole_broken_or_cut_payloads(
    payload: str, expected: str
) -> None:
    assert redact_secrets(payload) == expected

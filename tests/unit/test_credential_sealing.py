"""Access tokens sealed with their credential's own key: opened with it, and nothing else."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from cryptography.exceptions import InvalidTag

from infra.credential_keys import is_sealed, seal, store_key, unseal

pytestmark = pytest.mark.unit

KEY = os.urandom(32)
CREDENTIAL = uuid.UUID(int=7)


def test_a_sealed_token_opens_with_its_key_and_shows_nothing_of_the_token() -> None:
    token = "access-sandbox-0123456789"
    sealed = seal(KEY, CREDENTIAL, token)

    assert is_sealed(sealed) and not is_sealed(token)
    assert token not in sealed
    assert unseal(KEY, CREDENTIAL, sealed) == token
    assert seal(KEY, CREDENTIAL, token) != sealed  # a fresh nonce every time


def test_another_key_cannot_open_it() -> None:
    with pytest.raises(InvalidTag):
        unseal(os.urandom(32), CREDENTIAL, seal(KEY, CREDENTIAL, "access-1"))


def test_a_sealed_token_moved_to_another_credential_does_not_open() -> None:
    with pytest.raises(InvalidTag):
        unseal(KEY, uuid.UUID(int=8), seal(KEY, CREDENTIAL, "access-1"))


def test_the_store_key_must_be_an_aes_key_in_base64() -> None:
    assert store_key(base64.b64encode(KEY).decode()) == KEY
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        store_key(base64.b64encode(b"short").decode())

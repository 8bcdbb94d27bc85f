"""MX webhook authentication (HTTP Basic, as MX documents) and normalisation."""

from __future__ import annotations

import aiohttp
import msgspec
import pytest

from services.providers.base import WebhookRejectedError
from services.providers.mx.links import parse_public_token, public_token
from services.providers.mx.webhooks import BasicCredentials, normalise, verify_basic

pytestmark = pytest.mark.unit

CREDENTIALS = BasicCredentials("syncyard-hooks", "webhook-password-9f8e7d")
USER = "USR-eaf4ac68-d17d-5e9b-7b46-959a5b315a9e"
MEMBER = "MBR-48d9a481-f2a2-7e13-2685-62869cf0d33a"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(username, password)}


def test_the_credentials_mx_was_given_pass() -> None:
    verify_basic(basic("syncyard-hooks", "webhook-password-9f8e7d"), CREDENTIALS)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no Authorization header"),
        (basic("syncyard-hooks", "guessed"), "wrong webhook credentials"),
        (basic("someone-else", "webhook-password-9f8e7d"), "wrong webhook credentials"),
        ({"Authorization": "Bearer abc"}, "not HTTP Basic"),
        ({"Authorization": "Basic !!!"}, "not base64"),
    ],
)
def test_missing_or_forged_credentials_are_refused(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookRejectedError, match=reason):
        verify_basic(headers, CREDENTIALS)


def test_without_configured_credentials_every_webhook_is_refused() -> None:
    with pytest.raises(WebhookRejectedError, match="no webhook credentials are configured"):
        verify_basic(basic("a", "b"), None)


def test_the_refusal_never_echoes_the_password() -> None:
    with pytest.raises(WebhookRejectedError) as caught:
        verify_basic(basic("syncyard-hooks", "guessed"), CREDENTIALS)

    assert "webhook-password-9f8e7d" not in str(caught.value)
    assert "webhook-password-9f8e7d" not in repr(CREDENTIALS)


@pytest.mark.parametrize(
    ("payload", "kind", "error_code"),
    [
        (
            {"type": "AGGREGATION", "action": "member_data_updated", "member_guid": MEMBER},
            "transactions_updated",
            None,
        ),
        (
            {
                "type": "CONNECTION_STATUS",
                "action": "CHANGED",
                "connection_status": "CHALLENGED",
                "member_guid": MEMBER,
            },
            "login_required",
            "CHALLENGED",
        ),
        (
            {
                "type": "CONNECTION_STATUS",
                "action": "CHANGED",
                "connection_status": "DEGRADED",
                "member_guid": MEMBER,
            },
            "item_error",
            "DEGRADED",
        ),
        (
            {
                "type": "CONNECTION_STATUS",
                "action": "CHANGED",
                "connection_status": "CONNECTED",
                "member_guid": MEMBER,
            },
            "login_repaired",
            "CONNECTED",
        ),
        ({"type": "MEMBER", "action": "DELETED", "guid": MEMBER}, "item_removed", None),
        (
            {"type": "STATEMENT", "action": "member_data_updated", "member_guid": MEMBER},
            "other",
            None,
        ),
    ],
)
def test_mx_webhooks_are_normalised_by_type_and_status(
    payload: dict[str, str], kind: str, error_code: str | None
) -> None:
    event = normalise("mx", msgspec.json.encode({"user_guid": USER, **payload}))

    assert (event.kind, event.error_code, event.item_id) == (kind, error_code, MEMBER)


def test_a_created_member_is_our_public_token_for_mx() -> None:
    body = {
        "type": "MEMBER",
        "action": "CREATED",
        "guid": MEMBER,
        "user_guid": USER,
        "connection_status": "CONNECTED",
    }

    event = normalise("mx", msgspec.json.encode(body))

    assert (event.kind, event.public_token) == ("public_token", f"{USER}:{MEMBER}")
    assert parse_public_token(event.public_token or "") == (USER, MEMBER)


@pytest.mark.parametrize("token", ["", "USR-1", "USR-1:", ":MBR-1", "USR-1:MBR-1:x"])
def test_anything_but_a_user_member_pair_is_not_an_mx_public_token(token: str) -> None:
    assert parse_public_token(token) is None
    assert parse_public_token(public_token("USR-1", "MBR-1")) == ("USR-1", "MBR-1")

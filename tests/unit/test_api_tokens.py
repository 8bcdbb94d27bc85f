"""API tokens: how they are configured and kept, who may call which route, and that the API
never starts open."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from events.saga import SagaStarted, SagaStepSucceeded
from infra.bootstrap import API_TOKEN_FILE, ConfigurationError, api_tokens_for
from infra.config import Settings, load_settings
from infra.http.api import create_app
from infra.http.auth import (
    ACCESS,
    Role,
    TokenBook,
    TokenSpecError,
    digest_of,
    local_admin,
    parse_tokens,
    tokens_from_env,
)
from infra.http.manual import MANUAL_OPERATIONS, manual_routes
from infra.http.openapi import openapi_view
from infra.http.sagas import SAGA_OPERATIONS, saga_routes
from infra.http.webhooks import WEBHOOK_OPERATIONS, webhook_routes
from sagas.view import saga_text, saga_view

pytestmark = pytest.mark.unit

SECRET = "s3cret-token-abcdefghijklmnop"


def _settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(**{"nats_url": None, "database_url": None, "state_dir": tmp_path, **fields})


def test_an_entry_names_its_role_and_spaces_and_only_the_token_s_sha256_is_kept() -> None:
    (bound, every) = parse_tokens(
        tokens_from_env(f"app:viewer:s1|s2:{SECRET},\nops:operator:*:{SECRET}:with:colons")
    )
    assert (bound.name, bound.role, bound.spaces) == ("app", Role.VIEWER, frozenset({"s1", "s2"}))
    assert bound.digest == digest_of(SECRET) and every.spaces is None
    # A token may hold ':' itself: it is everything after the third.
    assert every.digest == digest_of(f"{SECRET}:with:colons")
    assert every.sees("any-space") and bound.sees("s2") and not bound.sees("s3")
    settings = load_settings({"SYNCYARD_API_TOKENS": f"app:admin:*:{SECRET}"})
    assert SECRET not in repr(settings) and settings.api_tokens[0].role is Role.ADMIN


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (f"app:viewer:{SECRET}", "write NAME:ROLE:SPACES:TOKEN"),
        (f"app:superuser:*:{SECRET}", "role must be one of viewer, operator, admin, auditor"),
        ("app:viewer:*:short", "16+ characters"),
        (f"app:viewer::{SECRET}", "name its spaces"),
        (f"app:viewer:*|s1:{SECRET}", "* means every space"),
        (f":viewer:*:{SECRET}", "needs a name"),
        (f"a:viewer:*:{SECRET},a:admin:*:{SECRET}x", "names must be unique"),
        (f"a:viewer:*:{SECRET},b:admin:*:{SECRET}", "share one token"),
    ],
)
def test_a_bad_token_entry_is_refused_saying_what_to_write_and_never_echoing_the_token(
    spec: str, message: str
) -> None:
    with pytest.raises(TokenSpecError, match=message.replace("*", r"\*").replace("+", r"\+")) as e:
        parse_tokens(tokens_from_env(spec))
    assert SECRET not in str(e.value)


def test_the_tokens_file_holds_one_entry_a_line_with_comments_and_joins_the_variable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# the dashboard\ndash:viewer:s1:{SECRET}1\n\naudit:auditor:*:{SECRET}2\n")
    env = {
        "SYNCYARD_API_TOKENS": f"ops:operator:s1:{SECRET}3",
        "SYNCYARD_API_TOKENS_FILE": str(path),
    }
    names = [t.name for t in load_settings(env).api_tokens]
    assert names == ["ops", "dash", "audit"]
    with pytest.raises(TokenSpecError, match=r"SYNCYARD_API_TOKENS_FILE .*missing"):
        load_settings({"SYNCYARD_API_TOKENS_FILE": str(tmp_path / "missing")})


def test_a_presented_token_finds_its_entry_and_an_unknown_one_finds_none() -> None:
    book = TokenBook(parse_tokens(tokens_from_env(f"a:viewer:*:{SECRET}a,b:admin:*:{SECRET}b")))
    found = book.find(f"{SECRET}b")
    assert found is not None and found.name == "b"
    assert book.find(SECRET) is None and book.find("") is None
    with pytest.raises(ValueError, match="at least one token"):
        TokenBook([])


def test_outside_the_embedded_mode_without_tokens_the_api_refuses_to_start(
    tmp_path: Path,
) -> None:
    external = _settings(tmp_path, nats_url="nats://x:4222", database_url="postgresql://x/db")
    with pytest.raises(ConfigurationError, match=r"needs API tokens.*SYNCYARD_API_TOKENS"):
        api_tokens_for(external)
    assert not (tmp_path / API_TOKEN_FILE).exists()
    configured = parse_tokens(tokens_from_env(f"ops:operator:*:{SECRET}"))
    given = _settings(tmp_path, nats_url="n", database_url="d", api_tokens=configured)
    assert api_tokens_for(given) == configured


def test_the_embedded_mode_makes_one_local_admin_token_in_a_0600_file_and_keeps_it(
    tmp_path: Path,
) -> None:
    (first,) = api_tokens_for(_settings(tmp_path / "state"))
    token_file = tmp_path / "state" / API_TOKEN_FILE
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 40 and first.digest == digest_of(token)
    assert (first.role, first.spaces) == (Role.ADMIN, None)
    assert api_tokens_for(_settings(tmp_path / "state")) == (first,)


def test_serve_with_external_servers_and_no_token_exits_saying_what_to_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra import cli  # noqa: PLC0415 - main reads the environment when called

    # Unreachable servers: the refusal must come before any connection is tried.
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/db")
    monkeypatch.setenv("SYNCYARD_CIPHER_KEY", "k" * 44)
    monkeypatch.delenv("SYNCYARD_API_TOKENS", raising=False)
    monkeypatch.delenv("SYNCYARD_API_TOKENS_FILE", raising=False)
    assert cli.main(["serve", "--components", "api"]) == 2
    assert "needs API tokens" in capsys.readouterr().err


def _served_keys() -> set[tuple[str, str]]:
    app = create_app(None, lambda: True, tokens=[local_admin(SECRET)])  # type: ignore[arg-type]
    app.add_routes(saga_routes(None, None, None))  # type: ignore[arg-type]  # never called here
    app.add_routes(manual_routes(None))  # type: ignore[arg-type]
    app.add_routes(webhook_routes(None, None, None))  # type: ignore[arg-type]
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_every_route_served_has_an_access_rule_and_every_rule_a_route() -> None:
    assert _served_keys() == set(ACCESS)


def test_only_health_readiness_and_the_webhooks_are_open() -> None:
    open_routes = {key for key, access in ACCESS.items() if access.scope == "open"}
    assert open_routes == {
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("post", "/v1/sagas/{saga_id}/webhook"),
        ("post", "/v1/webhooks/{provider}"),
    }


async def test_the_openapi_document_declares_the_bearer_scheme_and_each_route_s_roles() -> None:
    app = create_app(None, lambda: True, tokens=[local_admin(SECRET)])  # type: ignore[arg-type]
    app.add_routes(saga_routes(None, None, None))  # type: ignore[arg-type]
    app.add_routes(manual_routes(None))  # type: ignore[arg-type]
    from infra.http.openapi import OPENAPI_OPERATIONS  # noqa: PLC0415

    app.add_routes(webhook_routes(None, None, None))  # type: ignore[arg-type]
    app[OPENAPI_OPERATIONS].update(SAGA_OPERATIONS)
    app[OPENAPI_OPERATIONS].update(WEBHOOK_OPERATIONS)
    app[OPENAPI_OPERATIONS].update(MANUAL_OPERATIONS)
    response = await openapi_view(make_mocked_request("GET", "/v1/openapi.json", app=app))
    assert isinstance(response.body, bytes)
    document = json.loads(response.body)
    scheme = document["components"]["securitySchemes"]["bearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    paths = document["paths"]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/v1/sagas/{saga_id}/webhook"]["post"]["security"] == []
    assert paths["/v1/webhooks/{provider}"]["post"]["security"] == []
    stats = paths["/v1/admin/stats"]["get"]
    assert stats["security"] == [{"bearerToken": []}] and stats["x-roles"] == ["admin"]
    assert {"401", "403"} <= set(stats["responses"])
    link = paths["/v1/sagas/{saga_id}/link"]["get"]
    assert link["x-roles"] == ["admin", "operator"]
    manual = paths["/v1/accounts/{account_id}/manual-entries/{ledger_id}"]["post"]
    assert manual["x-roles"] == ["admin", "operator"] and not manual.get("x-undocumented")
    body = manual["requestBody"]["content"]["application/json"]["schema"]
    assert "ManualEntry" in body["$defs"]
    history = paths["/v1/connections/{account_id}/history"]["get"]
    assert history["x-roles"] == ["admin", "auditor", "operator", "viewer"]
    space = next(p for p in history["parameters"] if p["name"] == "space_id")
    assert space["required"]


async def test_a_route_added_without_an_access_rule_is_refused_to_every_caller() -> None:
    async def extra(_: web.Request) -> web.Response:
        return web.Response(text="should not be reached")

    app = create_app(None, lambda: True, tokens=[local_admin(SECRET)])  # type: ignore[arg-type]
    app.router.add_get("/v1/extra", extra)
    handler = app._handle  # the app's own dispatch, middlewares included
    request = make_mocked_request(
        "GET", "/v1/extra", headers={"Authorization": f"Bearer {SECRET}"}, app=app
    )
    app.freeze()
    response = await handler(request)
    assert response.status == 403


def _event(cls: type[Any], saga: uuid.UUID, version: int, **fields: Any) -> Any:
    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    return cls(originator_id=saga, originator_version=version, timestamp=at, **fields)


def test_the_saga_view_shows_no_link_token_widget_url_or_public_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saga = uuid.uuid4()
    events = [
        _event(SagaStarted, saga, 1, kind="link", command_id="link-1", space_id="s",
               account_id="a", connection_id=uuid.uuid4(), params={"region": "US"}),
        _event(SagaStepSucceeded, saga, 2, step="create_link", attempt=1,
               output={"provider": "mx", "link_token": "https://widget.example/abc",
                       "widget_url": "https://widget.example/abc", "expires_at": None,
                       "nested": [{"public_token": "public-sandbox-x"}]}),
    ]  # fmt: skip
    caplog.set_level(logging.DEBUG)
    view = saga_view(events)
    shown = json.dumps(view)
    assert "widget.example" not in shown and "public-sandbox-x" not in shown
    output = view["steps"][0]["attempts"][0]["output"]
    assert output == {"provider": "mx", "expires_at": None, "nested": [{}]}
    # The audit CLI's text shares the view.
    assert "create_link attempt 1: succeeded" in saga_text(view)

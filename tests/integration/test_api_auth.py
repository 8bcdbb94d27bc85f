"""Who may call the HTTP API, over a real database and a running syncyard: every route x every
role (and no token, a bad token, the wrong space) gets its 200, 401 or 403."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from infra.bootstrap import API_TOKEN_FILE, Runtime
from infra.http.api import ROUTES
from tests.integration.read_api_server import read_api
from tests.integration.saga_helpers import (
    complete_link,
    person_finishes,
    saga_ended,
    saga_id,
    saga_reaches,
    start_link,
)
from tests.support.harness import (
    API_TOKENS,
    SPACE,
    TEST_TOKENS,
    Client,
    auth,
    running_syncyard,
    settings_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# The table README.md "Authentication" gives, written out again: which roles each
# route lets in. Open routes let everyone in, without a token.
OPEN = "open"
READERS = {"viewer", "operator", "admin"}
ALLOWED: dict[str, set[str] | str] = {
    "/healthz": OPEN,
    "/readyz": OPEN,
    "/v1/openapi.json": READERS,
    "/v1/asyncapi.json": READERS,
    "/v1/providers/health": READERS,
    "/v1/providers/reliability": READERS,
    "/v1/providers/failover-rates": READERS,
    "/v1/breakers": READERS,
    "/v1/connections/{account_id}/history": READERS | {"auditor"},
    "/v1/connections/{account_id}/status": READERS,
    "/v1/connections/{account_id}/syncs": READERS,
    "/v1/connections/{account_id}/reliability": READERS,
    "/v1/accounts/{account_id}/transactions/changes": READERS,
    "/v1/admin/stats": {"admin"},
    "/v1/metrics/overview": READERS,
    "/v1/sagas": READERS | {"auditor"},
}
# Counts over every space: a token bound to some spaces may not read them.
FLEET = {"/v1/metrics/overview"}


def expected(path: str, token: str | None) -> int:
    """The status `token` (a name of TEST_TOKENS, "bad", or None) gets from `path`."""
    allowed = ALLOWED[path]
    if allowed == OPEN:
        return 200
    if token is None or token == "bad":
        return 401
    role, spaces = TEST_TOKENS[token]
    if role not in allowed:
        return 403
    if path in FLEET and spaces != "*":
        return 403
    if "{account_id}" in path and spaces not in ("*", SPACE):
        return 403
    return 200


def headers_of(token: str | None) -> dict[str, str]:
    if token is None:
        return {}
    if token == "bad":
        return {"Authorization": "Bearer not-a-token-of-anyone-at-all"}
    return auth(token)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[str]:
    async with read_api(database_url, API_TOKENS) as url:
        yield url


async def test_every_read_route_gets_the_right_status_for_every_role_space_and_bad_token(
    api: str,
) -> None:
    assert {route.path for route in ROUTES} == set(ALLOWED)
    callers: list[str | None] = [None, "bad", *TEST_TOKENS]
    wrong: list[tuple[str, str | None, int, int]] = []
    async with aiohttp.ClientSession() as http:
        for route in ROUTES:
            query = f"?space_id={SPACE}" if "{account_id}" in route.path else ""
            url = f"{api}{route.path.format(account_id='acct-a')}{query}"
            for token in callers:
                async with http.get(url, headers=headers_of(token)) as resp:
                    want = expected(route.path, token)
                    if resp.status != want:
                        wrong.append((route.path, token, resp.status, want))
                    if resp.status == 401:
                        assert resp.headers["WWW-Authenticate"].startswith("Bearer realm=")
                    if resp.status in (401, 403):
                        assert (await resp.json())["error"]["code"] in ("unauthorised", "forbidden")
    assert wrong == [], "(route, token, got, wanted)"


async def test_an_account_route_needs_a_space_of_the_token_s(api: str) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{api}/v1/connections/acct-a/status"
        async with http.get(url, headers=auth("viewer-1")) as resp:
            assert resp.status == 400
            assert "space_id is required" in (await resp.json())["error"]["message"]
        async with http.get(f"{url}?space_id=space-2", headers=auth("viewer-1")) as resp:
            assert resp.status == 403 and "space-2" in (await resp.json())["error"]["message"]
        # A token of the right space still sees nothing of the account in another.
        async with http.get(f"{url}?space_id=space-2", headers=auth("viewer-2")) as resp:
            assert resp.status == 404


async def test_the_saga_list_shows_and_counts_only_the_token_s_spaces(api: str) -> None:
    async def listed(token: str) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{api}/v1/sagas", headers=auth(token)) as resp,
        ):
            assert resp.status == 200
            return await resp.json()

    everyone, own, other = (
        await listed("auditor"),
        await listed("auditor-1"),
        await listed("viewer-2"),
    )
    assert [s["space_id"] for s in everyone["sagas"]] == [SPACE]
    assert own["sagas"] == everyone["sagas"] and own["counts"] == everyone["counts"]
    assert other["sagas"] == [] and set(other["counts"].values()) == {0}


async def _status(http: aiohttp.ClientSession, method: str, url: str, token: str | None) -> int:
    async with http.request(method, url, headers=headers_of(token), json={}) as resp:
        if resp.status == 401 and token is None and url.endswith("/webhook"):
            # The webhook route is open: its 401 is the provider signature's, not a token's.
            assert "WWW-Authenticate" not in resp.headers
        return resp.status


async def test_the_saga_routes_let_each_role_see_what_the_table_says_and_no_view_shows_a_token(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    assert syncyard.sagas is not None
    assert (await upstream.send(start_link("acct-auth", "link-auth"))).success
    state = await saga_reaches(syncyard.sagas, "link-auth", lambda s: "create_link" in s.outputs)
    link_token = str(state.outputs["create_link"]["link_token"])
    base = f"{syncyard.http_url}/v1/sagas/{saga_id('link-auth')}"
    viewers = {"viewer", "operator", "admin", "auditor"}
    table: dict[tuple[str, str], set[str] | str] = {
        ("GET", base): viewers,
        ("GET", f"{base}/link"): {"operator", "admin"},
    }
    wrong = []
    async with aiohttp.ClientSession() as http:
        for (method, url), allowed in table.items():
            for token in [None, "bad", *TEST_TOKENS]:
                if token in (None, "bad"):
                    want = 401
                else:
                    role, spaces = TEST_TOKENS[token]
                    want = 200 if role in allowed and spaces in ("*", SPACE) else 403
                got = await _status(http, method, url, token)
                if got != want:
                    wrong.append((url.removeprefix(base) or "/", token, got, want))
        # Open, signed by the provider: no token is asked for, a forged signature is refused.
        assert await _status(http, "POST", f"{base}/webhook", None) == 401
        async with http.get(base, headers=auth("auditor-1")) as resp:
            view = await resp.json()
        async with http.get(f"{base}/link", headers=auth("operator-1")) as resp:
            link = await resp.json()
    assert wrong == [], "(route, token, got, wanted)"
    assert link_token not in str(view) and "link_token" not in str(view)
    assert link == {
        "saga_id": str(saga_id("link-auth")),
        "kind": "link",
        "provider": "plaid",
        "link_token": link_token,
        "expires_at": state.outputs["create_link"]["expires_at"],
    }

    # Once the person is back, the token opens nothing more: it is no longer handed out.
    done = await person_finishes(sandbox, "plaid", link_token)
    await upstream.send(complete_link("acct-auth", "link-auth", done["public_token"]))
    await saga_ended(syncyard.sagas, "link-auth")
    async with (
        aiohttp.ClientSession(headers=auth("operator-1")) as http,
        http.get(f"{base}/link") as resp,
    ):
        assert resp.status == 409 and "no longer waits" in (await resp.json())["error"]


async def test_an_embedded_start_without_tokens_makes_a_0600_local_admin_token_the_api_accepts(
    sandbox: str, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    # As `make run` starts: embedded (no NATS_URL/DATABASE_URL in the settings), no token.
    settings = msgspec.structs.replace(settings_for(sandbox), state_dir=tmp_path, api_tokens=())
    async with running_syncyard(settings, nats_url, database_url, frozenset({"api"})) as runtime:
        token_file = tmp_path / API_TOKEN_FILE
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        async with aiohttp.ClientSession() as http:
            url = f"{runtime.http_url}/v1/openapi.json"  # no read model: no projector here
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(url) as resp:
                assert resp.status == 401

"""The commands `make run`'s banner tells a newcomer to paste are ones syncyard accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from events.codec import decode_command
from infra import cli
from infra.bootstrap import Runtime
from infra.config import DEFAULT_HIERARCHY, load_settings
from infra.demos import region_demos

pytestmark = pytest.mark.unit

_SEND = re.compile(r"syncyard send (\S+) '(\{.*\})'")


def _banner() -> str:
    runtime = Runtime.__new__(Runtime)  # only the fields the banner reads
    runtime.http_url = "http://127.0.0.1:8080"
    runtime.settings = load_settings({"SYNCYARD_STATE_DIR": str(Path("state"))})
    return cli._banner(runtime, "nats://127.0.0.1:4222", "postgresql://db", "http://127.0.0.1:8099")


def test_every_command_the_banner_shows_decodes_as_a_command_of_its_operation() -> None:
    sends = _SEND.findall(_banner())

    assert [op for op, _ in sends] == [
        "connection.register",
        "connection.register",
        "sync.transactions",
        "sync.transactions",
        "sync.transactions",
        "link.start",
        # Mexico, crypto, manual entry
        "connection.register",
        "link.create",
        "connection.register",
        "sync.transactions",
        "connection.register",
        "connection.register",
        "sync.transactions",
        "connection.register",
        "sync.transactions",
        "sync.transactions",
    ]
    for op, payload in sends:
        assert decode_command(op, payload.encode()).op == op
    ids = [decode_command(op, payload.encode()).command_id for op, payload in sends]
    assert len(set(ids)) == len(ids), "a command id shown twice would be dropped as a resend"


def test_each_region_s_demo_registers_its_hierarchy_in_its_region() -> None:
    registered: dict[str, list[str]] = {}
    for op, payload in _SEND.findall(_banner()):
        cmd = decode_command(op, payload.encode())
        if op == "connection.register":
            registered.setdefault(cmd.region, []).append(cmd.provider)  # type: ignore[attr-defined]

    assert registered == {
        "US": ["plaid", "mx"],
        "MX": ["belvo", "mx"],
        "CRYPTO": ["bitso", "blockchain"],
        "MANUAL": ["manual"],
    }
    for region, providers in registered.items():
        assert tuple(providers) == DEFAULT_HIERARCHY[region][: len(providers)]


def test_the_multi_homed_demo_links_one_person_at_plaid_and_at_mx() -> None:
    banner = _banner()
    person = cli.EXAMPLE_PERSON

    assert f'"access_token":"access-sandbox-{person}"' in banner
    assert f'"access_token":"USR-{person}"' in banner
    assert f"/_admin/truth/{person}" in banner
    assert "/v1/accounts/acct-demo-1/transactions/changes?space_id=demo&since=0" in banner


def test_every_api_call_the_banner_shows_sends_the_local_token_and_the_link_comes_from_link() -> (
    None
):
    banner = _banner()
    api_calls = [line for line in banner.splitlines() if "curl" in line and ":8080/v1/" in line]

    assert api_calls and all('-H "Authorization: Bearer $SYNCYARD_TOKEN"' in c for c in api_calls)
    assert f"export SYNCYARD_TOKEN=$(cat {Path('state').resolve()}/api-token)" in banner
    assert "/v1/sagas/<saga_id>/link" in banner
    assert "?space_id=demo" in banner.split("/v1/connections/acct-demo-1/history")[1][:15]


def test_with_tokens_configured_the_banner_names_no_token_file() -> None:
    runtime = Runtime.__new__(Runtime)
    runtime.http_url = "http://127.0.0.1:8080"
    runtime.settings = load_settings({"SYNCYARD_API_TOKENS": "ops:admin:*:" + "t" * 32})
    banner = cli._banner(runtime, "nats://n", "postgresql://db", "http://127.0.0.1:8099")

    assert "api-token" not in banner and "<a token of SYNCYARD_API_TOKENS>" in banner


def test_the_readme_shows_the_banner_s_region_demos() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Every region")[1].split("\n## ")[0]
    demos = region_demos(
        send=".venv/bin/syncyard send",
        auth='curl -H "Authorization: Bearer $SYNCYARD_TOKEN"',
        api="http://localhost:8080",
        sandbox="http://localhost:8099",
        run="1",
    )

    assert _SEND.findall(section) == _SEND.findall(demos)


def test_another_terminal_is_told_where_this_run_keeps_its_state_unless_it_is_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # `send`, `audit` and `replay` find the run through its state folder.
    monkeypatch.chdir(tmp_path)
    elsewhere = _banner().split("Keep one account's")[0]
    assert f"export SYNCYARD_STATE_DIR={(tmp_path / 'state').resolve()}" in elsewhere
    assert f"cd {tmp_path}" in elsewhere

    runtime = Runtime.__new__(Runtime)
    runtime.http_url = "http://127.0.0.1:8080"
    runtime.settings = load_settings({})
    default = cli._banner(runtime, "nats://n", "postgresql://db", "http://127.0.0.1:8099")
    assert "SYNCYARD_STATE_DIR" not in default

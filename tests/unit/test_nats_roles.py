"""The NATS roles table, the configuration it renders, the subjects that name a space, and
the ids nobody may pre-empt."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from events.commands import FLEET_OPS, SPACE_OPS
from events.subjects import (
    EVENT_PREFIX,
    EVENT_STREAM,
    command_address,
    command_msg_id,
    space_command_subject,
    space_header,
    space_result_subject,
    space_token,
)
from infra.cli import _nats_config, main
from infra.eventlog.relay import event_id_key, event_msg_id
from infra.nats_credentials import (
    NatsCredential,
    connect_options,
    credentials_from_env,
    embedded_credentials,
)
from infra.nats_roles import (
    ADMIN,
    ANALYTICS,
    ANALYTICS_CONSUMER,
    RELAY,
    ROLES,
    UPSTREAM,
    UPSTREAM_INBOX,
    WORKER,
    analytics_reader,
    is_upstream_inbox,
    roles,
    server_config,
)

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).parents[2] / "infra" / "deploy" / "nats-server.conf"
KEY = event_id_key("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")


def test_the_shipped_production_configuration_is_the_one_the_table_renders() -> None:
    # The embedded server runs with server_config(): every integration test loads it.
    assert SHIPPED.read_text() == server_config() == _nats_config(passwords_template=False)


def test_only_the_relay_may_publish_events() -> None:
    events = f"{EVENT_PREFIX}.>"
    for role in ROLES.values():
        if role.name == RELAY:
            assert role.publish == (events,)
        else:
            assert not [s for s in role.publish if s.startswith(EVENT_PREFIX)], role.name
            assert any(events.startswith(d.rstrip(">")) for d in role.deny_publish), role.name


def test_no_role_reads_another_role_s_inbox() -> None:
    prefixes = {role.name: role.inbox_prefix for role in ROLES.values() if role.name != ADMIN}
    assert len(set(prefixes.values())) == len(prefixes)
    for role in ROLES.values():
        if role.name == ADMIN:
            continue
        inboxes = [s for s in role.subscribe if s.startswith("_INBOX")]
        assert inboxes == [f"{role.inbox_prefix}.>"], role.name


def test_the_worker_answers_on_upstream_inboxes_by_permission_not_by_allow_responses() -> None:
    # allow_responses would let a response through even where the deny list forbids it.
    assert "allow_responses" not in server_config()
    assert f"{UPSTREAM_INBOX}.>" in ROLES[WORKER].publish
    assert ROLES[UPSTREAM].inbox_prefix == UPSTREAM_INBOX


@pytest.mark.parametrize(
    ("reply", "answered"),
    [
        ("_INBOX.abc.1", True),
        ("_INBOX.", False),
        ("_INBOX_worker.abc", False),
        ("syncyard.evt.connection.Forged", False),
        ("$JS.API.STREAM.PURGE.SYNCYARD_EVT", False),
        ("_INBOXsyncyard", False),
    ],
)
def test_an_rpc_is_answered_only_on_an_upstream_inbox(reply: str, answered: bool) -> None:
    assert is_upstream_inbox(reply) is answered


def test_a_command_s_message_id_is_scoped_by_its_space_and_cannot_collide() -> None:
    assert command_msg_id("demo", "sync-1") == "demo/sync-1"
    assert command_msg_id("demo", "sync-1") != command_msg_id("other", "sync-1")
    # A "/" in the space cannot make two pairs share one id, nor a newline break the header.
    assert command_msg_id("a/b", "c") != command_msg_id("a", "b/c")
    assert "\n" not in command_msg_id("evil\r\nNats-Msg-Id: x", "c")
    assert space_header("acme/x") == "acme%2Fx"


def test_the_relay_s_message_id_is_not_the_notification_id_and_needs_the_key() -> None:
    first = event_msg_id(KEY, 1)
    assert first == event_msg_id(KEY, 1)  # a repeat after a crash is still a duplicate
    assert first not in {"evt:1", "1"}
    assert first != event_msg_id(KEY, 2)
    other_key = event_id_key("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=")
    assert first != event_msg_id(other_key, 1)


def test_credentials_come_from_files_the_environment_names(tmp_path: Path) -> None:
    password = tmp_path / "upstream.password"
    password.write_text("s3cret\n")
    env = {
        "SYNCYARD_NATS_UPSTREAM_USER": "orders-service",
        "SYNCYARD_NATS_UPSTREAM_PASSWORD_FILE": str(password),
        "SYNCYARD_NATS_WORKER_CREDS_FILE": "/run/secrets/worker.creds",
    }
    found = credentials_from_env(env)

    assert set(found) == {UPSTREAM, WORKER}
    assert connect_options(UPSTREAM, found[UPSTREAM]) == {
        "inbox_prefix": UPSTREAM_INBOX,
        "user": "orders-service",
        "password": "s3cret",
    }
    assert connect_options(WORKER, found[WORKER]) == {
        "inbox_prefix": ROLES[WORKER].inbox_prefix,
        "user_credentials": "/run/secrets/worker.creds",
    }
    assert "s3cret" not in repr(found)  # settings hold where the secret is, not the secret
    assert connect_options(RELAY, None) == {"inbox_prefix": ROLES[RELAY].inbox_prefix}


def test_embedded_passwords_are_random_private_and_kept_across_starts(tmp_path: Path) -> None:
    first = embedded_credentials(tmp_path / "auth")
    again = embedded_credentials(tmp_path / "auth")

    assert first == again and set(first) == set(ROLES)
    passwords = {c.password_file.read_text() for c in first.values() if c.password_file}
    assert len(passwords) == len(ROLES)
    for path in (tmp_path / "auth").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "auth").stat().st_mode) == 0o700
    assert first[UPSTREAM] == NatsCredential(
        user="upstream", password_file=tmp_path / "auth" / "upstream.password"
    )


def test_no_reader_of_the_event_stream_may_touch_a_consumer_it_does_not_name() -> None:
    table = roles({"ledger": (), "audit": ("audit-live", "audit-backfill")})
    api = "$JS.API.CONSUMER."
    for role in table.values():
        if role.name == ADMIN:
            continue
        on_events = [s for s in role.publish if EVENT_STREAM in s and s.startswith(api)]
        for subject in on_events:
            consumer = subject.split(f".{EVENT_STREAM}.", 1)[1].split(".", 1)[0]
            assert consumer in role.consumers, (role.name, subject)
        # An ephemeral (no name in the subject) gets a name from the server: refused.
        assert f"{api}CREATE.{EVENT_STREAM}" not in role.publish, role.name
    assert table["analytics_audit"].consumers == ("audit-live", "audit-backfill")
    assert table["analytics_ledger"].user == "analytics-ledger"
    assert table[ANALYTICS].consumers == (ANALYTICS_CONSUMER,)


def test_two_readers_cannot_own_one_consumer_name() -> None:
    with pytest.raises(ValueError, match="both"):
        roles({"ledger": ("shared",), "audit": ("shared",)})
    with pytest.raises(ValueError, match="both"):
        roles({"ledger": (ANALYTICS_CONSUMER,)})
    with pytest.raises(ValueError, match="reader name"):
        analytics_reader("Ledger.x")
    with pytest.raises(ValueError, match="consumer name"):
        analytics_reader("ledger", ("a.b",))  # a "." would make it two subject tokens


def test_nats_config_renders_each_reader_with_a_login_and_a_password_to_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["nats-config", "--analytics-reader", "ledger"]) == 0
    config = capsys.readouterr().out
    assert 'user: "analytics-ledger"' in config
    assert '"$JS.API.CONSUMER.DELETE.SYNCYARD_EVT.analytics-ledger"' in config
    assert main(["nats-config", "--analytics-reader", "ledger", "--passwords-template"]) == 0
    assert "SYNCYARD_NATS_ANALYTICS_LEDGER_PASSWORD" in capsys.readouterr().out
    assert main(["nats-config", "--analytics-reader", "a=x", "--analytics-reader", "b=x"]) == 2


@pytest.mark.parametrize("space", ["acme.eu", "a*b", "x>y", "a b", "a/b", "demo"])
def test_a_space_is_one_subject_token_on_its_result_subject(space: str) -> None:
    subject = space_result_subject(space, "sync.transactions")
    first, second, token, rest = subject.split(".", 3)
    assert (first, second) == ("syncyard", "space") and rest == "result.sync.transactions"
    assert not {".", "*", ">", " "} & set(token)
    assert space_token(space) == token and space_result_subject("other", "x") != subject


@pytest.mark.parametrize("space", ["acme.eu", "a*b", "x>y", "a b", "a/b", "demo", "%2E", "é"])
def test_a_command_s_space_subject_reads_back_as_its_space_and_op(space: str) -> None:
    subject = space_command_subject(space, "sync.transactions")
    assert subject == f"syncyard.space.{space_token(space)}.cmd.sync.transactions"
    assert command_address(subject) == ("sync.transactions", True, space)


def test_the_subject_that_names_no_space_reads_back_as_its_op_alone() -> None:
    assert command_address("syncyard.cmd.sync.transactions") == ("sync.transactions", False, None)


@pytest.mark.parametrize("token", ["acme%2eeu", "%61cme", "%FF", "", "a%2"])
def test_a_space_token_no_space_encodes_to_names_no_space(token: str) -> None:
    # Permissions name a space by `space_token` alone: another spelling of a space is
    # no space's subject, so a command sent there runs for none.
    address = command_address(f"syncyard.space.{token}.cmd.connection.register")
    assert address.space_scoped and address.space_id is None


def test_a_tenant_sends_and_reads_only_its_spaces_commands_and_results_and_has_no_rpc() -> None:
    table = roles(tenants={"acme": ("acme.eu", "acme.us")})
    tenant = table["upstream_acme"]
    assert tenant.user == "upstream-acme"
    # Every op but the fleet's, on each of its spaces' subjects.
    assert tenant.publish == tuple(
        f"syncyard.space.{token}.cmd.{op}"
        for token in ("acme%2Eeu", "acme%2Eus")
        for op in SPACE_OPS
    )
    assert "sync.transactions" in SPACE_OPS
    assert not FLEET_OPS & set(SPACE_OPS)
    assert {"breaker.force", "breaker.release", "institution.map"} == FLEET_OPS
    assert tenant.subscribe == (
        "syncyard.space.acme%2Eeu.result.>",
        "syncyard.space.acme%2Eus.result.>",
        "_INBOX_upstream_acme.>",
    )
    # The worker publishes every result again on its space's subject.
    assert "syncyard.space.*.result.>" in ROLES[WORKER].publish
    # The shared upstream login is trusted for every space, on either subject.
    assert {"syncyard.cmd.>", "syncyard.space.*.cmd.>"} <= set(ROLES[UPSTREAM].publish)
    with pytest.raises(ValueError, match="spaces"):
        roles(tenants={"acme": ()})

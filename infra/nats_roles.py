"""Who may do what on NATS: one table of roles, rendered as nats-server's configuration.

Every connection to syncyard's NATS logs in as one of these roles, and each
role may publish and subscribe only where its work needs (least privilege):

- `worker`: syncyard's command worker, sagas and timers. It consumes the
  command work queue, answers RPCs, publishes results and dead letters,
  re-queues deferred commands and declares the streams. It may not publish
  events, nor touch the event stream's messages.
- `relay`: the relay alone, on a connection of its own. The only role that
  may publish `syncyard.evt.>`.
- `upstream`: the services that send commands. They publish commands (through
  JetStream) and RPCs, and read results and their own inbox, nothing else.
  A tenant's login (`upstream_tenant`, `--upstream-tenant`) sends commands
  only on its spaces' own subjects, reads only its spaces' results, on their
  own subjects, and has no RPC.
- `analytics`: analytics and auditors. They read the event stream through
  the one consumer the login owns, `analytics`, and publish nothing on
  syncyard's subjects. A deployment with several readers renders one role
  each (`analytics_reader`, `syncyard nats-config --analytics-reader`), whose
  consumers no other login may create, read or delete.
- `admin`: an operator's tool (stream maintenance, `nats` CLI, the test
  suite's clean-up). It may do anything but publish events.

Each role has its own inbox prefix, so no role can subscribe to another's
replies: a JetStream pull delivers commands, access tokens included, into the
worker's inbox, which only the worker may read. Upstream keeps NATS's default
`_INBOX`, so any client library works unchanged; the worker answers RPCs only
there (`is_upstream_inbox`), by an explicit publish permission rather than
`allow_responses`: nats-server lets a response through even where the deny
list forbids the subject, so `allow_responses` would let an RPC naming
`syncyard.evt.x` (or a JetStream API subject) as its reply publish there with
the worker's rights.

The same table gives the embedded server's configuration (`infra/embedded.py`)
and the one shipped for production (`syncyard nats-config`, `deploy/`). The
passwords are not in it: each user's password is the variable
`$SYNCYARD_NATS_<ROLE>_PASSWORD`, defined in an included file that stays
beside it, mode 0600 (a bcrypt hash from `nats server passwd` in production).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from events.commands import SPACE_OPS
from events.subjects import (
    COMMAND_NO_DEDUPE_STREAM,
    COMMAND_PREFIX,
    COMMAND_STREAM,
    DLQ_PREFIX,
    DLQ_STREAM,
    EVENT_PREFIX,
    EVENT_STREAM,
    RESULT_PREFIX,
    RPC_PREFIX,
    SPACE_COMMANDS,
    SPACE_PREFIX,
    space_token,
)

ACCOUNT = "SYNCYARD"
PASSWORDS_FILE = "nats-passwords.conf"
UPSTREAM_INBOX = "_INBOX"

WORKER = "worker"
RELAY = "relay"
UPSTREAM = "upstream"
ANALYTICS = "analytics"
ADMIN = "admin"
# The one consumer of the event stream the shared `analytics` login may use.
ANALYTICS_CONSUMER = "analytics"

_JS = "$JS.API"
_EVENTS = f"{EVENT_PREFIX}.>"
# Account info and finding a stream by subject (nats-py's `pull_subscribe` does).
_LOOKUP = (f"{_JS}.INFO", f"{_JS}.STREAM.NAMES")


def _consume(stream: str) -> tuple[str, ...]:
    """The JetStream API subjects a client needs to read `stream` through consumers of any name.

    For syncyard's own worker on its own queue; readers of the event stream get
    `_own_consumers` instead.
    """
    return (
        *_LOOKUP,
        f"{_JS}.STREAM.INFO.{stream}",
        f"{_JS}.CONSUMER.CREATE.{stream}",
        f"{_JS}.CONSUMER.CREATE.{stream}.>",
        f"{_JS}.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"{_JS}.CONSUMER.INFO.{stream}.>",
        f"{_JS}.CONSUMER.DELETE.{stream}.>",
        f"{_JS}.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
    )


def _own_consumers(stream: str, consumers: tuple[str, ...]) -> tuple[str, ...]:
    """Read `stream` only through the consumers named `consumers`: create (named or
    durable, with or without a filter), inspect, pull, ack and delete those, no other.

    NATS permissions match whole subject tokens, so a name prefix (`analytics-*`)
    cannot be granted: each name is listed. A consumer without a name (an
    ephemeral, `CONSUMER.CREATE.<stream>`) gets one from the server, which no list
    can hold, so ephemerals are refused; a reader creates one of its names
    instead (nats-py: `js.pull_subscribe(subject, durable=NAME)`, or
    `ConsumerConfig(name=NAME)` for a named ephemeral).
    """
    return (
        *_LOOKUP,
        f"{_JS}.STREAM.INFO.{stream}",
        *(
            subject
            for name in consumers
            for subject in (
                f"{_JS}.CONSUMER.CREATE.{stream}.{name}",
                f"{_JS}.CONSUMER.CREATE.{stream}.{name}.>",  # with a filter subject
                f"{_JS}.CONSUMER.DURABLE.CREATE.{stream}.{name}",
                f"{_JS}.CONSUMER.INFO.{stream}.{name}",
                f"{_JS}.CONSUMER.MSG.NEXT.{stream}.{name}",
                f"{_JS}.CONSUMER.DELETE.{stream}.{name}",
                f"$JS.ACK.{stream}.{name}.>",
            )
        ),
    )


def _declare(*streams: str) -> tuple[str, ...]:
    """Create, update and inspect `streams`: never purge, delete or remove a message."""
    return tuple(
        f"{_JS}.STREAM.{verb}.{stream}"
        for stream in streams
        for verb in ("CREATE", "UPDATE", "INFO")
    )


def _declare_only(*streams: str) -> tuple[str, ...]:
    """Create (an existing stream's create with another config is refused) and inspect:
    an update could shrink the stream's limits (deleting events) or add subjects
    that take other messages in."""
    return tuple(
        f"{_JS}.STREAM.{verb}.{stream}" for stream in streams for verb in ("CREATE", "INFO")
    )


@dataclass(frozen=True)
class Role:
    """One kind of NATS client: its user, its inbox and its permissions."""

    name: str
    user: str
    purpose: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    inbox_prefix: str
    deny_publish: tuple[str, ...] = (_EVENTS,)
    # The event stream's consumers it owns: no other role may touch them.
    consumers: tuple[str, ...] = ()

    @property
    def password_variable(self) -> str:
        return f"SYNCYARD_NATS_{self.name.upper()}_PASSWORD"


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            name=WORKER,
            user="syncyard-worker",
            purpose="syncyard's worker: the command queue, RPC answers, results, dead letters",
            publish=(
                f"{COMMAND_PREFIX}.>",  # deferred commands go back into the queue
                f"{RESULT_PREFIX}.>",
                f"{SPACE_PREFIX}.*.result.>",  # each result again, for its space's readers
                f"{DLQ_PREFIX}.>",
                f"{UPSTREAM_INBOX}.>",  # RPC answers: to upstream's inboxes only
                *_declare(COMMAND_STREAM, COMMAND_NO_DEDUPE_STREAM, DLQ_STREAM),
                *_declare_only(EVENT_STREAM),
                *_consume(COMMAND_STREAM),
            ),
            subscribe=(f"{RPC_PREFIX}.>", "_INBOX_worker.>"),
            inbox_prefix="_INBOX_worker",
        ),
        Role(
            name=RELAY,
            user="syncyard-relay",
            purpose="syncyard's relay: the only publisher of events",
            publish=(_EVENTS,),
            subscribe=("_INBOX_relay.>",),
            inbox_prefix="_INBOX_relay",
            deny_publish=(),
        ),
        Role(
            name=UPSTREAM,
            user="upstream",
            purpose="services sending commands: publish commands, read results and replies",
            # Trusted for every space: a command on either subject, for any space.
            publish=(f"{COMMAND_PREFIX}.>", SPACE_COMMANDS, f"{RPC_PREFIX}.>"),
            subscribe=(f"{RESULT_PREFIX}.>", f"{UPSTREAM_INBOX}.>"),
            inbox_prefix=UPSTREAM_INBOX,
        ),
        Role(
            name=ANALYTICS,
            user="analytics",
            purpose="analytics and auditors: read the event stream through consumer "
            f"{ANALYTICS_CONSUMER!r}, publish nothing",
            publish=_own_consumers(EVENT_STREAM, (ANALYTICS_CONSUMER,)),
            subscribe=("_INBOX_analytics.>",),
            inbox_prefix="_INBOX_analytics",
            deny_publish=("syncyard.>",),
            consumers=(ANALYTICS_CONSUMER,),
        ),
        Role(
            name=ADMIN,
            user="syncyard-admin",
            purpose="operators' tools: stream maintenance; never publishes events",
            publish=(">",),
            subscribe=(">",),
            # Its own inbox: upstream logins read `_INBOX.>`, and an admin's
            # replies (a stream's messages, access tokens included) must not
            # reach them. The `nats` CLI takes `--inbox-prefix _INBOX_admin`.
            inbox_prefix="_INBOX_admin",
        ),
    )
}

# The roles syncyard's own processes and its CLI connect as.
CLIENT_ROLES = (WORKER, RELAY, UPSTREAM, ANALYTICS, ADMIN)

_READER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_SPACE_ID = 128  # the contract's bound (events.base.Identifier)
# nats-server's own rule for a consumer name, less what a subject token cannot hold.
_CONSUMER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def analytics_reader(reader: str, consumers: tuple[str, ...] = ()) -> Role:
    """A reader of the event stream with a login and consumers of its own.

    Readers that share the `analytics` login share its consumer, and so may
    delete or drain each other's. A deployment with several (a ledger, an
    auditor) gives each one of these: user `analytics-<reader>`, consumers
    named `consumers` (by default the one `analytics-<reader>`), an inbox of
    its own. The names must not be another reader's (`roles` checks).
    """
    if not _READER_NAME.fullmatch(reader):
        raise ValueError(f"reader name {reader!r}: lower-case letters, digits and _ only")
    owned = consumers or (f"{ANALYTICS}-{reader}",)
    for name in owned:
        if not _CONSUMER_NAME.fullmatch(name):
            raise ValueError(f"consumer name {name!r}: letters, digits, - and _ only")
    return Role(
        name=f"{ANALYTICS}_{reader}",
        user=f"{ANALYTICS}-{reader}",
        purpose=f"analytics reader {reader!r}: read the event stream through consumers "
        f"{', '.join(owned)}, publish nothing",
        publish=_own_consumers(EVENT_STREAM, owned),
        subscribe=(f"_INBOX_{ANALYTICS}_{reader}.>",),
        inbox_prefix=f"_INBOX_{ANALYTICS}_{reader}",
        deny_publish=("syncyard.>",),
        consumers=owned,
    )


def upstream_tenant(tenant: str, spaces: tuple[str, ...]) -> Role:
    """An upstream login that sends commands for `spaces` and reads only their results.

    It sends commands through JetStream on its spaces' own subjects
    (`syncyard.space.<space>.cmd.<op>`), never `syncyard.cmd.>`, whose subject
    names no space; the worker refuses one whose payload names another space
    than its subject (`space_mismatch`). It reads results on its spaces' own
    subjects (`syncyard.space.<space>.result.>`), never `syncyard.result.>`,
    and has no RPC: an RPC's answer comes to the asker's inbox whatever space
    it names, so `feed.read` over RPC would read any space. It may not send the
    fleet's ops (`FLEET_OPS`: breakers, the institution mapping), which act for
    every space.
    """
    if not _READER_NAME.fullmatch(tenant):
        raise ValueError(f"tenant name {tenant!r}: lower-case letters, digits and _ only")
    if not spaces or not all(0 < len(space) <= _MAX_SPACE_ID for space in spaces):
        raise ValueError(f"tenant {tenant!r} needs its spaces, each 1 to 128 characters")
    inbox = f"_INBOX_{UPSTREAM}_{tenant}"
    return Role(
        name=f"{UPSTREAM}_{tenant}",
        user=f"{UPSTREAM}-{tenant}",
        purpose=f"upstream tenant {tenant!r}: send the commands and read the results of "
        f"spaces {', '.join(spaces)} only",
        # Each op but the fleet's (breakers, the institution mapping), which act
        # for every space: the worker refuses those on a space's subject too.
        publish=tuple(
            f"{SPACE_PREFIX}.{space_token(space)}.cmd.{op}" for space in spaces for op in SPACE_OPS
        ),
        subscribe=(
            *(f"{SPACE_PREFIX}.{space_token(space)}.result.>" for space in spaces),
            f"{inbox}.>",
        ),
        inbox_prefix=inbox,
    )


def roles(
    readers: Mapping[str, tuple[str, ...]] | None = None,
    tenants: Mapping[str, tuple[str, ...]] | None = None,
) -> dict[str, Role]:
    """The table: syncyard's roles, an analytics reader for each of `readers`
    (reader name → the consumer names it owns; empty: `analytics-<reader>`), and
    an upstream login for each of `tenants` (tenant name → its spaces)."""
    table = dict(ROLES)
    for tenant, spaces in (tenants or {}).items():
        role = upstream_tenant(tenant, spaces)
        table[role.name] = role
    owners = {name: ANALYTICS for name in ROLES[ANALYTICS].consumers}
    for reader, consumers in (readers or {}).items():
        role = analytics_reader(reader, consumers)
        for name in role.consumers:
            if name in owners:
                raise ValueError(f"consumer {name!r} is both {owners[name]}'s and {role.name}'s")
            owners[name] = role.name
        table[role.name] = role
    return table


def is_upstream_inbox(subject: str) -> bool:
    """Whether an RPC's reply subject is an upstream inbox, the only place answers go."""
    prefix = f"{UPSTREAM_INBOX}."
    return subject.startswith(prefix) and len(subject) > len(prefix)


def _subjects(key: str, subjects: tuple[str, ...], indent: str) -> str:
    # JSON strings are valid nats-server configuration strings.
    unique = dict.fromkeys(subjects)  # in order, each once
    items = "".join(f"{indent}  {json.dumps(subject)}\n" for subject in unique)
    return f"{indent}{key}: [\n{items}{indent}]\n"


def _user_block(role: Role) -> str:
    deny = _subjects("deny", role.deny_publish, " " * 12) if role.deny_publish else ""
    return (
        f"      # {role.purpose}\n"
        "      {\n"
        f'        user: "{role.user}"\n'
        f"        password: ${role.password_variable}\n"
        "        permissions: {\n"
        "          publish: {\n"
        f"{_subjects('allow', role.publish, ' ' * 12)}{deny}"
        "          }\n"
        "          subscribe: {\n"
        f"{_subjects('allow', role.subscribe, ' ' * 12)}"
        "          }\n"
        "        }\n"
        "      }"
    )


def server_config(
    passwords_file: str = PASSWORDS_FILE, table: Mapping[str, Role] | None = None
) -> str:
    """nats-server's `accounts` block for syncyard: one account with JetStream, a user per role.

    `passwords_file` (relative to this file) must define every
    `SYNCYARD_NATS_<ROLE>_PASSWORD`; nats-server refuses to start without it.
    `table` is `ROLES` unless told (`roles(...)` adds readers).
    """
    users = "\n".join(_user_block(role) for role in (table or ROLES).values())
    return (
        "# syncyard's NATS accounts and permissions, generated from infra/nats_roles.py:\n"
        "# edit the table there, not this file. Clients not listed here cannot connect.\n"
        f'include "{passwords_file}"\n\n'
        "accounts {\n"
        f"  {ACCOUNT} {{\n"
        "    jetstream: enabled\n"
        "    users: [\n"
        f"{users}\n"
        "    ]\n"
        "  }\n"
        "}\n"
    )


def passwords_config(passwords: dict[str, str], table: Mapping[str, Role] | None = None) -> str:
    """The included file: each role's password (or bcrypt hash) as a quoted variable."""
    known = table or ROLES
    lines = [f"{known[name].password_variable}: {json.dumps(pw)}" for name, pw in passwords.items()]
    return "# syncyard's NATS passwords: keep this file 0600\n" + "\n".join(lines) + "\n"

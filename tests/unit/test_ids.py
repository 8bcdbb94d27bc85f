"""Ids derived from two identifiers: distinct for distinct pairs, unchanged for stored ones."""

from __future__ import annotations

import uuid

import pytest

from sagas.state import saga_id_for
from services.connections.state import connection_id_for, pair_key

pytestmark = pytest.mark.unit


def test_a_space_and_account_that_used_to_collide_get_distinct_connections() -> None:
    assert connection_id_for("acme/x", "y") != connection_id_for("acme", "x/y")
    assert pair_key("acme/x", "y") != pair_key("acme", "x/y")


def test_a_space_and_command_that_used_to_collide_get_distinct_sagas() -> None:
    assert saga_id_for("acme/x", "link-1") != saga_id_for("acme", "x/link-1")


@pytest.mark.parametrize(
    ("pair", "other"),
    [
        (("a/b", "c"), ("a", "b/c")),
        (("a", "b/c"), ("a/b/c", "")),
        (("v2", "1:a/b"), ("a", "b")),
        (("1:a", "b/c"), ("1:a/b", "c")),
        (("", "a/b"), ("a/b", "")),
    ],
)
def test_no_two_pairs_share_a_key(pair: tuple[str, str], other: tuple[str, str]) -> None:
    assert pair_key(*pair) != pair_key(*other)


def test_ids_of_ordinary_pairs_are_the_ones_already_stored() -> None:
    # As derived before, so connections and sagas already stored keep their streams.
    namespace = uuid.UUID("5d3c2f7e-4a51-4be4-9a43-6f1c1a0b9e21")
    assert connection_id_for("demo", "acct-demo-1") == uuid.uuid5(
        namespace, "connection/demo/acct-demo-1"
    )
    assert connection_id_for("demo", "acct-demo-1") == uuid.UUID(
        "594b3dcd-9564-5107-b3bd-475579f9b895"
    )
    assert saga_id_for("demo", "link-1") == uuid.UUID("9443870c-9ea2-5714-8fc4-fd6f74e6236b")
    assert pair_key("demo", "acct-demo-1") == "demo/acct-demo-1"

"""The sync path's fault-injection hook for crash tests (infra/bootstrap.py)."""

from __future__ import annotations

import pytest

from infra.bootstrap import ConfigurationError, sync_crash_hook

pytestmark = pytest.mark.unit


def test_the_sync_crash_hook_is_inert_unless_set() -> None:
    hook = sync_crash_hook({})
    hook("after_provider")  # would SIGKILL this test if armed
    hook("after_commit")


def test_an_armed_sync_crash_hook_lets_every_other_point_pass() -> None:
    armed = sync_crash_hook({"SYNCYARD_SYNC_CRASH_AT": "after_commit"})
    armed("after_provider")  # only after_commit kills


def test_a_sync_crash_point_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="after_provider, after_commit"):
        sync_crash_hook({"SYNCYARD_SYNC_CRASH_AT": "before_lunch"})

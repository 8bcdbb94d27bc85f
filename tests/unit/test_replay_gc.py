"""A build raises the collector's first threshold while it runs, and puts it back after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from projections.replay_gc import young_objects_collected_less_often

pytestmark = pytest.mark.unit


@pytest.fixture
def default_threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_overlapping_builds_restore_the_threshold_when_the_last_one_ends(
    default_threshold: tuple[int, int, int],
) -> None:
    with young_objects_collected_less_often():
        raised = gc.get_threshold()
        with young_objects_collected_less_often():
            assert gc.get_threshold() == raised
        assert gc.get_threshold() == raised  # the other build still runs
    assert raised[0] > default_threshold[0]
    assert raised[1:] == default_threshold[1:]
    assert gc.get_threshold() == default_threshold


def test_a_failing_build_restores_the_threshold(default_threshold: tuple[int, int, int]) -> None:
    with pytest.raises(RuntimeError), young_objects_collected_less_often():
        raise RuntimeError("build failed")
    assert gc.get_threshold() == default_threshold

"""Which read models share the projector's pages, and which catch up on their own."""

from __future__ import annotations

import pytest

from projections.engine import Projection, cohorts
from services.ports import DbConnection, Notification

pytestmark = pytest.mark.unit


class Named(Projection):
    schema = ""
    handles = ()

    def __init__(self, name: str) -> None:
        self.name = name

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        raise AssertionError("not applied in these tests")


HEALTH, ATTEMPTS, STATUS = Named("health"), Named("attempts"), Named("status")
ALL = [HEALTH, ATTEMPTS, STATUS]


def names(groups: list[list[Projection]]) -> list[list[str]]:
    return [[p.name for p in group] for group in groups]


def test_read_models_at_the_same_place_share_one_cohort() -> None:
    assert names(cohorts(ALL, {"health": 9_000, "attempts": 9_000, "status": 9_000}, 1000)) == [
        ["health", "attempts", "status"]
    ]


def test_less_than_a_page_apart_is_still_one_cohort() -> None:
    positions = {"health": 9_000, "attempts": 8_001, "status": 8_500}
    assert names(cohorts(ALL, positions, 1000)) == [["health", "attempts", "status"]]


def test_a_page_or_more_behind_catches_up_on_its_own() -> None:
    positions = {"health": 9_000, "attempts": 8_000, "status": 0}
    assert names(cohorts(ALL, positions, 1000)) == [["health"], ["attempts", "status"]]


def test_one_never_projected_counts_as_at_zero() -> None:
    assert names(cohorts(ALL, {"health": 5_000, "attempts": 5_000}, 1000)) == [
        ["health", "attempts"],
        ["status"],
    ]


def test_no_read_models_no_cohorts() -> None:
    assert cohorts([], {}, 1000) == []

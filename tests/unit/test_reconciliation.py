"""One purchase seen through two providers keeps one syncyard id."""

from __future__ import annotations

from typing import Any

import pytest

from services.reconciliation.matcher import Tolerance, assign, normalise

pytestmark = pytest.mark.unit
TOL = Tolerance()

# The same three purchases as two aggregators report them: other ids, other
# merchant cleaning, posting dates a day apart.
PLAID_PAGE = [
    {
        "transaction_id": "p1",
        "account_id": "pa",
        "amount": 4.75,
        "date": "2026-11-02",
        "name": "Blue Bottle Coffee",
    },
    {
        "transaction_id": "p2",
        "account_id": "pa",
        "amount": 61.2,
        "date": "2026-11-03",
        "name": "SAFEWAY #1234",
    },
    {
        "transaction_id": "p3",
        "account_id": "pa",
        "amount": 12.0,
        "date": "2026-11-05",
        "name": "Uber Trip",
    },
]
MX_PAGE = [
    {
        "transaction_id": "m1",
        "account_id": "ma",
        "amount": "4.75",
        "date": "2026-11-03",
        "name": "SQ *BLUE BOTTLE COFFEE OAKLAND",
    },
    {
        "transaction_id": "m2",
        "account_id": "ma",
        "amount": "61.20",
        "date": "2026-11-03",
        "name": "Safeway",
    },
    {
        "transaction_id": "m3",
        "account_id": "ma",
        "amount": "12.00",
        "date": "2026-11-04",
        "name": "UBER *TRIP HELP.UBER.COM",
    },
    {
        "transaction_id": "m4",
        "account_id": "ma",
        "amount": "12.00",
        "date": "2026-11-20",
        "name": "UBER *TRIP HELP.UBER.COM",
    },
]


def run(
    provider: str, page: list[dict[str, Any]], known: list[Any]
) -> tuple[dict[str, str], list[Any], set[str]]:
    return assign("conn-1", provider, page, known, TOL)


def test_the_same_purchases_through_a_second_provider_get_the_first_ids() -> None:
    plaid_ids, plaid_rows, plaid_dupes = run("plaid", PLAID_PAGE, [])
    assert plaid_dupes == set()
    mx_ids, _, mx_dupes = run("mx", MX_PAGE, plaid_rows)
    assert mx_ids["m1"] == plaid_ids["p1"]
    assert mx_ids["m2"] == plaid_ids["p2"]
    assert mx_ids["m3"] == plaid_ids["p3"]
    assert mx_dupes == {"m1", "m2", "m3"}
    # Same amount and merchant, but weeks later: another purchase.
    assert mx_ids["m4"] not in plaid_ids.values()


def test_a_redelivered_page_gets_the_same_ids_and_no_new_rows() -> None:
    ids, rows, _ = run("plaid", PLAID_PAGE, [])
    again, new_rows, dupes = run("plaid", PLAID_PAGE, rows)
    assert again == ids and new_rows == [] and dupes == set()


def test_one_purchase_matches_at_most_one_transaction_per_provider() -> None:
    _, plaid_rows, _ = run("plaid", PLAID_PAGE[:1], [])
    twice = [MX_PAGE[0], {**MX_PAGE[0], "transaction_id": "m1b"}]
    ids, _, dupes = run("mx", twice, plaid_rows)
    assert dupes == {"m1"}
    assert ids["m1b"] != ids["m1"]  # two coffees the same morning are two purchases


def test_different_amounts_never_match() -> None:
    _, plaid_rows, _ = run("plaid", PLAID_PAGE[:1], [])
    _, _, dupes = run("mx", [{**MX_PAGE[0], "amount": "4.76"}], plaid_rows)
    assert dupes == set()


def test_descriptions_are_compared_without_noise() -> None:
    assert normalise("SQ *BLUE BOTTLE COFFEE #12, OAKLAND") == "sq blue bottle coffee oakland"

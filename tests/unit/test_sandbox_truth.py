"""The sandbox's ground-truth banks and each provider's view of them, without HTTP."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from sandbox.belvo_api_data import transaction_rows
from sandbox.finicity_api_data import transaction_body as finicity_transaction
from sandbox.links import LinkBook
from sandbox.mx_data import mx_records
from sandbox.plaid_api import sync_log
from sandbox.truth import HISTORY_END, Bank, TruthBook, iso_date, iso_time
from sandbox.views import PROVIDERS, plaid_ids, provider_date, provider_ids

pytestmark = pytest.mark.unit

PEOPLE = ("ana", "bruno", "chen", "dara")


def ledger(bank: Bank) -> list[tuple[int, int, str, str, float]]:
    return [(e.seq, e.at, e.kind, e.transaction.id, e.transaction.amount) for e in bank.events]


@pytest.mark.parametrize("person", PEOPLE)
def test_the_same_seed_and_person_give_the_same_bank(person: str) -> None:
    first, second = TruthBook(7).bank(person), TruthBook(7).bank(person)

    assert ledger(first) == ledger(second)
    assert first.accounts == second.accounts
    assert ledger(TruthBook(8).bank(person)) != ledger(first)


def test_people_have_unrelated_banks() -> None:
    banks = [TruthBook(7).bank(p) for p in PEOPLE]

    assert len({tuple(ledger(b)) for b in banks}) == len(PEOPLE)


@pytest.mark.parametrize("person", PEOPLE)
def test_the_history_has_every_kind_of_bank_activity(person: str) -> None:
    bank = TruthBook(7).bank(person)

    kinds = Counter(e.kind for e in bank.events)
    tipped = [t for t in bank.transactions.values() if t.was_pending and not t.pending]
    assert kinds["authorized"] and kinds["settled"] and kinds["posted"]
    assert kinds["withdrawn"] >= 1
    assert any(t.amount != t.authorized_amount for t in tipped)
    assert any(t.kind == "payroll" and t.amount < 0 for t in bank.live())
    assert bank.now == HISTORY_END and bank.history == len(bank.events)
    assert all(e.at <= HISTORY_END for e in bank.events)


@pytest.mark.parametrize("person", PEOPLE)
def test_every_posted_transaction_that_was_pending_follows_its_authorisation(
    person: str,
) -> None:
    bank = TruthBook(7).bank(person)
    bank.advance(days=10)

    authorised = {e.transaction.id: e for e in bank.events if e.kind == "authorized"}
    for event in (e for e in bank.events if e.kind == "settled"):
        before = authorised[event.transaction.id]
        assert before.at < event.at
        assert before.transaction.authorized_amount == event.transaction.authorized_amount
        assert event.transaction.authorized_date == before.transaction.authorized_date
        posted, authorised_on = event.transaction.posted_date, event.transaction.authorized_date
        assert posted is not None and authorised_on is not None and posted >= authorised_on


def test_advancing_by_days_does_not_depend_on_how_the_days_are_cut() -> None:
    whole, cut = TruthBook(7).bank("ana"), TruthBook(7).bank("ana")

    whole.advance(days=6)
    for days in (1, 0.5, 2.5, 2):
        cut.advance(days=days)

    assert ledger(whole) == ledger(cut)
    assert whole.now == cut.now


def test_advancing_by_transactions_makes_exactly_that_many_things_happen() -> None:
    bank, again = TruthBook(7).bank("ana"), TruthBook(7).bank("ana")

    happened = bank.advance(events=12)
    again.advance(events=5)
    again.advance(events=7)

    assert len(happened) == 12
    assert [e.seq for e in happened] == list(range(bank.history + 1, bank.history + 13))
    assert ledger(bank) == ledger(again)
    assert bank.now == happened[-1].at > HISTORY_END


def test_a_month_brings_new_charges_postings_and_releases() -> None:
    bank = TruthBook(7).bank("ana")

    happened = bank.advance(days=30)

    kinds = Counter(e.kind for e in happened)
    assert kinds["authorized"] > 5 and kinds["settled"] > 5
    assert kinds["withdrawn"] >= 1
    assert all(e.at > HISTORY_END for e in happened)


def test_a_reset_book_gives_back_the_bank_as_its_history_left_it() -> None:
    book = TruthBook(7)
    before = ledger(book.bank("ana"))
    book.bank("ana").advance(days=3)

    book.reset()

    assert ledger(book.bank("ana")) == before


def plaid_fold(bank: Bank, start: int = 0) -> dict[str, dict[str, object]]:
    """Plaid's log folded as a client does: added/modified upsert, removed delete."""
    folded: dict[str, dict[str, object]] = {}
    for change in sync_log(bank)[start:]:
        body = change.body
        if change.kind == "removed":
            folded.pop(str(body["transaction_id"]), None)
            continue
        if body.get("pending_transaction_id"):
            folded.pop(str(body["pending_transaction_id"]), None)
        folded[str(body["transaction_id"])] = body
    return folded


@pytest.mark.parametrize("person", PEOPLE)
def test_plaid_s_log_folds_to_the_live_transactions_before_and_after_time_passes(
    person: str,
) -> None:
    bank = TruthBook(7).bank(person)
    for _ in range(2):
        folded = plaid_fold(bank)

        expected = {plaid_ids(bank, t)[0]: t for t in bank.live()}
        assert folded.keys() == expected.keys()
        for plaid_id, body in folded.items():
            t = expected[plaid_id]
            assert (body["amount"], body["pending"], body["date"]) == (t.amount, t.pending, t.date)
        bank.advance(days=15)


def test_plaid_reports_a_posting_as_the_pending_id_removed_and_a_new_id_pointing_back() -> None:
    bank = TruthBook(7).bank("ana")
    start = len(sync_log(bank))

    bank.advance(days=10)

    later = sync_log(bank)[start:]
    added_pending = {
        c.body["transaction_id"] for c in later if c.kind == "added" and c.body["pending"]
    }
    postings = [c.body for c in later if c.kind == "added" and c.body["pending_transaction_id"]]
    removed = {c.body["transaction_id"] for c in later if c.kind == "removed"}
    assert postings
    for posted in postings:
        assert posted["pending_transaction_id"] in removed
        assert posted["transaction_id"] != posted["pending_transaction_id"]
    assert added_pending & {p["pending_transaction_id"] for p in postings}


def test_plaid_s_ids_stay_what_seed_7_has_always_given() -> None:
    """Ids are part of the data: a faster way to write them must write the same ones."""
    first = sync_log(TruthBook(7).bank("ana"))[0].body

    assert (first["transaction_id"], first["pending_transaction_id"], first["account_id"]) == (
        "HUgveAxkIKXvi5bxqjn6RSYkHWpmaxmpzwWoj",
        "nnNb41LAQrunmYHVSx1mAoogmkN1wwaSU7AL8",
        "cCLh7JgYW7EpMh5B3HpFFVplkYdGNvO9GNbEM",
    )


@pytest.mark.parametrize(
    "epoch", [0, -1, 86_399, 86_400, -86_401, HISTORY_END, HISTORY_END + 1, 4_102_444_800 + 3_723]
)
def test_dates_and_times_are_written_as_datetime_writes_them_in_utc(epoch: int) -> None:
    moment = datetime.fromtimestamp(epoch, UTC)

    assert iso_date(epoch) == moment.date().isoformat()
    assert iso_time(epoch) == moment.isoformat().replace("+00:00", "Z")


def test_mx_keeps_one_guid_from_pending_to_posted_and_marks_withdrawals_deleted() -> None:
    bank = TruthBook(7).bank("ana")
    before = {r.guid: r for r in mx_records(bank)}

    happened = bank.advance(days=20)

    after = {r.guid: r for r in mx_records(bank)}
    settled = [e.transaction for e in happened if e.kind == "settled"]
    withdrawn = [e.transaction for e in happened if e.kind == "withdrawn"]
    assert settled and withdrawn
    for t in settled:
        guid = provider_ids(bank, t)["mx"]["transaction_id"]
        assert guid is not None and not after[guid].transaction.pending
        if guid in before:
            assert before[guid].transaction.pending
            assert after[guid].updated_at > before[guid].updated_at
    for t in withdrawn:
        assert after[str(provider_ids(bank, t)["mx"]["transaction_id"])].deleted
    assert not any(r.deleted for r in before.values())


@pytest.mark.parametrize("person", PEOPLE)
def test_each_provider_s_view_maps_one_to_one_onto_the_live_transactions(person: str) -> None:
    bank = TruthBook(7).bank(person)
    bank.advance(days=5)
    live = bank.live()

    views = {
        "plaid": [str(b["transaction_id"]) for b in plaid_fold(bank).values()],
        "mx": [r.guid for r in mx_records(bank) if not r.deleted],
        "finicity": [str(finicity_transaction(bank, t, "5011648377")["id"]) for t in live],
        "belvo": [str(r["id"]) for r in transaction_rows(bank, "link-1")],
    }

    for provider, ids in views.items():
        to_bank = {provider_ids(bank, t)[provider]["transaction_id"]: t.id for t in live}
        assert len(ids) == len(set(ids)) == len(live), provider
        assert sorted(to_bank[i] for i in ids) == sorted(t.id for t in live), provider
    every = [i for ids in views.values() for i in ids]
    assert len(every) == len(set(every))


def test_providers_name_and_date_the_same_transaction_differently() -> None:
    bank = TruthBook(7).bank("ana")
    coffee = next(t for t in bank.live() if t.merchant and t.description != t.merchant)
    record = next(r for r in mx_records(bank) if r.transaction.id == coffee.id)
    plaid = plaid_fold(bank)[plaid_ids(bank, coffee)[0]]
    posted = next(t for t in bank.live() if not t.pending)

    assert plaid["name"] == plaid["merchant_name"] == coffee.merchant
    assert record.transaction.description == coffee.description != coffee.merchant
    assert provider_date("mx", posted) > provider_date("plaid", posted) == posted.date
    assert {provider_date(p, posted) for p in PROVIDERS} == {
        posted.date,
        provider_date("mx", posted),
    }


def test_a_bare_plaid_token_and_a_bare_mx_user_of_one_person_read_one_bank() -> None:
    links = LinkBook(7)

    assert links.plaid_person("access-sandbox-ana") == links.mx_person("USR-ana") == "ana"
    assert links.plaid_institution("access-sandbox-ana") == links.mx_institution(
        "USR-ana", "MBR-ana"
    )


def test_a_token_from_the_link_flow_belongs_to_the_person_who_linked() -> None:
    links = LinkBook(7)
    public_token = links.issue_plaid_public_token("ins_1", "space-1/ana")
    access_token = links.plaid_public_tokens[public_token]
    user_guid, _ = links.mx_user("space-1/ana")

    assert links.plaid_person(access_token) == links.mx_person(user_guid) == "space-1/ana"

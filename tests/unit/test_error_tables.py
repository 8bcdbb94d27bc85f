"""The error-table registry: every provider's tables listed, every row rendered, and
a row's own word on failover carried through to the error the adapter raises."""

from __future__ import annotations

import msgspec
import pytest

from events.errors import ERROR_TYPES, ErrorInfo, ErrorType
from services.providers.base import FAILOVER_TYPES, ProviderCallError
from services.providers.belvo.errors import BELVO_ERRORS, belvo_error
from services.providers.bitso.errors import BITSO_ERRORS, bitso_error
from services.providers.docs import render
from services.providers.error_tables import ERROR_TABLES, ErrorTable, rows
from services.providers.finicity.errors import FINICITY_ERRORS, finicity_error
from services.providers.http import ErrorRule, invalid_response
from services.providers.manual.adapter import ManualAdapter
from services.providers.manual.store import InMemoryManualEntries
from services.providers.registry import ADAPTER_FACTORIES

pytestmark = pytest.mark.unit

# Manual entry calls no one, so it has no provider errors to classify.
PROVIDERS_WITHOUT_ERRORS = {"manual"}


def test_every_provider_that_calls_out_has_a_table_registered() -> None:
    registered = {table.provider for table in ERROR_TABLES}

    assert registered == set(ADAPTER_FACTORIES) - PROVIDERS_WITHOUT_ERRORS


@pytest.mark.parametrize("table", ERROR_TABLES, ids=lambda t: f"{t.provider}-{t.key}")
def test_every_row_of_a_table_renders_in_its_section(table: ErrorTable) -> None:
    section = render((table,))

    assert table.rules, "a registered table has rows"
    for row in rows((table,)):
        assert f"| {row.provider} | `{row.code}` | {row.type} |" in section


def test_the_page_has_one_section_per_table() -> None:
    page = render()

    for table in ERROR_TABLES:
        assert page.count(f"## {table.provider}: by {table.key}\n") == 1


@pytest.mark.parametrize("type_", ERROR_TYPES)
def test_a_rule_fails_over_by_its_type_unless_told(type_: ErrorType) -> None:
    assert ErrorRule(type_, True).failover_helps == (type_ in FAILOVER_TYPES)
    assert ErrorRule(type_, True, failover_helps=True).failover_helps
    assert not ErrorRule(type_, True, failover_helps=False).failover_helps


def test_a_rows_own_failover_wins_over_its_type() -> None:
    by_code = {(r.provider, r.code): r for r in rows()}

    # The bank's own maintenance reaches every provider.
    assert by_code["finicity", "320"].type == "maintenance"
    assert not by_code["finicity", "320"].failover_helps
    # Our credentials at Finicity mean nothing to another provider.
    assert by_code["finicity", "10001"].type == "auth"
    assert by_code["finicity", "10001"].failover_helps
    assert by_code["belvo", "unsupported_operation"].failover_helps
    assert not by_code["belvo", "too_many_sessions"].failover_helps


def test_error_rules_compare_by_value() -> None:
    assert ErrorRule("auth", False) == ErrorRule("auth", False, failover_helps=False)
    assert ErrorRule("auth", False) != ErrorRule("auth", False, failover_helps=True)


def test_a_provider_call_error_fails_over_by_its_type_unless_told() -> None:
    down = ErrorInfo(code="x", message="m", type="provider_down", retryable=True)
    bad = msgspec.structs.replace(down, type="validation", retryable=False)

    assert ProviderCallError(down).failover_helps
    assert not ProviderCallError(bad).failover_helps
    assert not ProviderCallError(down, failover_helps=False).failover_helps


def test_the_adapters_errors_carry_their_rows_failover() -> None:
    maintenance = finicity_error(500, msgspec.json.encode({"code": 320, "message": "down"}))
    bad_request = bitso_error(400, msgspec.json.encode({"error": {"code": "0303"}}))
    sessions = belvo_error(400, msgspec.json.encode([{"code": "too_many_sessions"}]))

    assert maintenance.failover_helps is FINICITY_ERRORS["320"].failover_helps is False
    assert bad_request.failover_helps is BITSO_ERRORS["0303"].failover_helps is True
    assert sessions.failover_helps is BELVO_ERRORS["too_many_sessions"].failover_helps is False


def test_a_garbled_reply_fails_over() -> None:
    assert invalid_response("plaid", "/accounts/get", 200, "body is not valid JSON").failover_helps


async def test_manual_entry_never_fails_over() -> None:
    adapter = ManualAdapter(InMemoryManualEntries())

    with pytest.raises(ProviderCallError) as caught:
        await adapter.exchange_token("no-such-ledger", timeout_s=1.0)

    assert not caught.value.failover_helps

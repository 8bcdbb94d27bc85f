"""docs/providers.md is generated from the error tables the adapters classify by."""

from __future__ import annotations

import pytest

from services.providers.docs import DOC_PATH, render
from services.providers.error_tables import ERROR_TABLES, rows
from services.providers.mx.errors import MX_CONNECTION_STATUSES
from services.providers.plaid.errors import PLAID_ERROR_CODES

pytestmark = pytest.mark.unit


def test_docs_providers_md_matches_the_error_tables() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/providers.md is out of date: run `python -m services.providers.docs`"
    )


def test_every_code_the_adapters_know_has_a_row_in_the_docs() -> None:
    page = render()

    for code in [*PLAID_ERROR_CODES, *MX_CONNECTION_STATUSES]:
        assert f"`{code}`" in page


def test_a_table_added_to_the_registry_shows_in_the_page() -> None:
    page = render(ERROR_TABLES[:1])

    assert "## plaid: by error_code" in page
    assert "## mx" not in page


def test_a_row_that_needs_the_person_is_never_retryable() -> None:
    for row in rows():
        if row.reauth_required:
            assert not row.retryable, row

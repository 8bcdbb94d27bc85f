"""The saga read model's status words are the saga state's own."""

from __future__ import annotations

from typing import get_args

import pytest

from projections.saga_status import SAGA_STATUSES, SagaCounts
from sagas.state import SagaStatus

pytestmark = pytest.mark.unit


def test_the_read_model_knows_every_status_a_saga_can_have_and_no_other() -> None:
    assert get_args(SagaStatus) == SAGA_STATUSES


def test_the_counts_in_the_sagas_response_name_every_status_in_order() -> None:
    assert SagaCounts.__struct_fields__ == SAGA_STATUSES

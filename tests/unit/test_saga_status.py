"""The saga read model's status words are the saga state's own."""

from __future__ import annotations

from typing import get_args

import pytest

from projections.saga_status import SAGA_STATUSES
from sagas.state import SagaStatus

pytestmark = pytest.mark.unit


def test_the_read_model_knows_every_status_a_saga_can_have_and_no_other() -> None:
    assert get_args(SagaStatus) == SAGA_STATUSES

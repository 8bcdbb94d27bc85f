"""Every read model syncyard keeps, in one explicit list."""

from __future__ import annotations

from projections.connection_attempts import ConnectionAttemptsProjection
from projections.connection_status import ConnectionStatusProjection
from projections.engine import Projection
from projections.feed import FeedProjection
from projections.linked_items import LinkedItemsProjection
from projections.provider_health import ProviderHealthProjection
from projections.saga_status import SagaStatusProjection
from projections.sync_log import SyncLogProjection


def all_projections() -> list[Projection]:
    return [
        ProviderHealthProjection(),
        ConnectionAttemptsProjection(),
        ConnectionStatusProjection(),
        SyncLogProjection(),
        SagaStatusProjection(),
        FeedProjection(),
        LinkedItemsProjection(),
    ]

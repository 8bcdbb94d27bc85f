"""Field types the read models' row structs share.

The HTTP API encodes those structs as they are, and its OpenAPI description is
generated from them (`infra/http/openapi.py`): a constraint written here is
part of the published description, and the API tests decode real responses
against it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

# Stored as timestamptz, so always with an offset: the description says date-time.
Time = Annotated[datetime, msgspec.Meta(tz=True)]
Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]

"""What every HTTP handler shares: the app's typed keys and the JSON response helpers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from aiohttp import web

from infra.http.responses import ApiError, ErrorDetail
from projections.settings import ReadModelSettings

Clock = Callable[[], datetime]

POOL = web.AppKey("pool", asyncpg.Pool)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
READ_SETTINGS = web.AppKey("read_settings", ReadModelSettings)
EVENTS_TABLE = web.AppKey("events_table", str)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, UUID):
        return str(obj)
    raise NotImplementedError(type(obj))


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def bad_request(message: str) -> web.Response:
    return json_response(
        ApiError(error=ErrorDetail(code="bad_request", message=message)), status=400
    )

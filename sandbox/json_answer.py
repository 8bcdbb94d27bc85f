"""JSON answers encoded with msgspec: the same values and headers as `web.json_response`.

The providers' hot routes answer on every sync; the standard library's encoder
was about a sixth of the sandbox's CPU per `/transactions/sync` (issue #13,
docs/BENCHMARKS.md). The bytes differ only in spacing and in non-ASCII text
sent as UTF-8 rather than `\\u` escapes: every JSON reader sees the same values.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

_ENCODER = msgspec.json.Encoder()


def json_response(
    data: Any, *, status: int = 200, content_type: str = "application/json"
) -> web.Response:
    """`data` as JSON, with the Content-Type `web.json_response` sends (charset utf-8)."""
    return web.Response(
        body=_ENCODER.encode(data), status=status, content_type=content_type, charset="utf-8"
    )

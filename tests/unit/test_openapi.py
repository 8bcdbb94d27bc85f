"""The OpenAPI description covers every route, and shows a route nobody described."""

from __future__ import annotations

import json
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from infra.http.api import create_app
from infra.http.auth import local_admin
from infra.http.openapi import (
    DOCUMENTS,
    OPERATIONS,
    RESPONSE_TYPES,
    openapi_document,
    openapi_view,
    undocumented_routes,
)

pytestmark = pytest.mark.unit


def routes_only() -> web.Application:
    # No request reaches the pool, and no token is sent.
    return create_app(None, lambda: True, tokens=[local_admin("t" * 32)])  # type: ignore[arg-type]


def test_every_route_the_api_registers_is_described() -> None:
    app = routes_only()
    assert undocumented_routes(app) == []


async def test_a_route_added_without_a_description_is_listed_and_flagged() -> None:
    async def extra(_: web.Request) -> web.Response:
        """Something a later change added."""
        return web.Response()

    app = routes_only()
    app.router.add_get("/v1/extra/{id}", extra)
    assert undocumented_routes(app) == [("get", "/v1/extra/{id}")]
    response = await openapi_view(make_mocked_request("GET", "/v1/openapi.json", app=app))
    assert isinstance(response.body, bytes)
    document = json.loads(response.body)
    operation = document["paths"]["/v1/extra/{id}"]["get"]
    assert operation["x-undocumented"] and operation["summary"] == "Something a later change added."
    assert document["paths"]["/v1/metrics/overview"]["get"]["parameters"][0]["name"] == "days"


def test_every_response_body_is_described_by_the_schema_generated_from_its_struct() -> None:
    document = openapi_document(OPERATIONS)
    schemas = document["components"]["schemas"]
    for (_, path), operation in OPERATIONS.items():
        body = operation["responses"]["200"]["content"]["application/json"]["schema"]
        if path in RESPONSE_TYPES:
            name = RESPONSE_TYPES[path].__name__
            assert body == {"$ref": f"#/components/schemas/{name}"}, path
        else:
            assert body == DOCUMENTS[path], path
    encoded = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', encoded)):
        assert ref in schemas, ref
    # A row's constraints travel with it: a rate is a number from 0 to 1, times carry an offset.
    window = schemas["HealthWindow"]["properties"]
    assert {"type": "number", "minimum": 0, "maximum": 1} in window["success_rate"]["anyOf"]
    assert schemas["SagaRow"]["properties"]["started_at"]["format"] == "date-time"

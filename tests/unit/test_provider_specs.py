"""The adapters' wire shapes and the sandbox's bodies against Plaid's and MX's OpenAPI documents.

No server: the adapters' msgspec structs must read only fields the spec
documents (and, at Plaid, require only what it requires and accept null where
it allows null); the sandbox's Plaid transactions, every kind the bank makes,
must validate; the checker itself must catch what it is there to catch.
"""

from __future__ import annotations

import hashlib
import json
import types
from typing import Any, Union, get_args, get_origin

import msgspec
import pytest

from sandbox.plaid_api import sync_log
from sandbox.truth import TruthBook
from services.providers.mx import links as mx_links
from services.providers.mx import wire as mx_wire
from services.providers.plaid import wire as plaid_wire
from services.providers.plaid.errors import PLAID_ERROR_TYPES
from tests.specs.openapi import (
    SPEC_FILES,
    Exchange,
    Provider,
    Spec,
    load_spec,
    request_problems,
    response_problems,
)
from tests.specs.refresh import PINS
from tests.unit.test_documented_error_codes import PLAID_DOCUMENTED

pytestmark = pytest.mark.unit

# Each struct an adapter decodes a provider's answer into, and the spec's schema for it.
PLAID_SHAPES: list[tuple[type[msgspec.Struct], str]] = [
    (plaid_wire._Balances, "AccountBalance"),
    (plaid_wire._Account, "AccountBase"),
    (plaid_wire.AccountsResponse, "AccountsGetResponse"),
    (plaid_wire._Transaction, "Transaction"),
    (plaid_wire._RemovedTransaction, "RemovedTransaction"),
    (plaid_wire.SyncResponse, "TransactionsSyncResponse"),
    (plaid_wire.LinkTokenResponse, "LinkTokenCreateResponse"),
    (plaid_wire.ExchangeResponse, "ItemPublicTokenExchangeResponse"),
    (plaid_wire.RemoveResponse, "ItemRemoveResponse"),
    (plaid_wire.PlaidInstitution, "Institution"),
    (plaid_wire.InstitutionResponse, "InstitutionsGetByIdResponse"),
    (plaid_wire.InstitutionsResponse, "InstitutionsSearchResponse"),
    (plaid_wire.InstitutionsResponse, "InstitutionsGetResponse"),
    (plaid_wire.Jwk, "JWKPublicKey"),
    (plaid_wire.VerificationKeyResponse, "WebhookVerificationKeyGetResponse"),
]
MX_SHAPES: list[tuple[type[msgspec.Struct], str]] = [
    (mx_wire._Pagination, "PaginationResponse"),
    (mx_wire._Account, "AccountResponse"),
    (mx_wire.AccountsResponse, "AccountsResponseBody"),
    (mx_wire.MxTransaction, "TransactionResponse"),
    (mx_wire.TransactionsResponse, "TransactionsResponseBodyIncludes"),
    (mx_wire._Member, "MemberStatusResponse"),
    (mx_wire.MemberStatusResponse, "MemberStatusResponseBody"),
    (mx_links.MxUser, "UserResponse"),
    (mx_links.UserResponse, "UserResponseBody"),
    (mx_links.UsersResponse, "UsersResponseBody"),
    (mx_links._WidgetUrl, "WidgetResponse"),
    (mx_links.WidgetUrlResponse, "WidgetResponseBody"),
    (mx_links._Member, "MemberResponse"),
    (mx_links.MemberResponse, "MemberResponseBody"),
    (mx_links.MxInstitution, "InstitutionResponse"),
    (mx_links.InstitutionResponse, "InstitutionResponseBody"),
    (mx_links.InstitutionsResponse, "InstitutionsResponseBody"),
]
# Fields an adapter reads that the spec does not document, each for a reason.
UNDOCUMENTED_READS = {
    # MX's spec has no deleted flag; the sandbox sends it (see sandbox/README.md).
    ("MxTransaction", "is_deleted"),
}


def spec_of(provider: Provider) -> Spec:
    spec = load_spec(provider)
    if spec is None:
        pytest.skip(
            f"{provider}'s OpenAPI document is not here: python -m tests.specs.refresh {provider}"
        )
    return spec


def schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def documented(spec: Spec, name: str) -> dict[str, Any]:
    """Every property the named schema documents, across allOf."""
    properties = spec._properties(schema(name))
    assert properties is not None, name
    return properties


def required(spec: Spec, name: str) -> set[str]:
    resolved = spec.resolve(schema(name))
    found = set(resolved.get("required", []))
    for part in resolved.get("allOf", []):
        found |= set(spec.resolve(part).get("required", []))
    return found


def accepts_none(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


@pytest.mark.parametrize(("provider", "shapes"), [("plaid", PLAID_SHAPES), ("mx", MX_SHAPES)])
def test_the_adapters_read_only_fields_the_provider_s_spec_documents(
    provider: Provider, shapes: list[tuple[type[msgspec.Struct], str]]
) -> None:
    spec = spec_of(provider)

    unknown = [
        f"{struct.__name__}.{field.encode_name} (schema {name})"
        for struct, name in shapes
        for field in msgspec.structs.fields(struct)
        if field.encode_name not in documented(spec, name)
        and (struct.__name__, field.encode_name) not in UNDOCUMENTED_READS
    ]

    assert unknown == []


def test_what_the_plaid_adapter_requires_plaid_requires_and_null_is_taken_where_plaid_allows() -> (
    None
):
    spec = spec_of("plaid")

    too_strict = []
    for struct, name in PLAID_SHAPES:
        properties, needed = documented(spec, name), required(spec, name)
        for field in msgspec.structs.fields(struct):
            prop = spec.resolve(properties[field.encode_name])
            if field.required and field.encode_name not in needed:
                too_strict.append(f"{struct.__name__}.{field.name} is optional at Plaid")
            if prop.get("nullable") and not accepts_none(field.type):
                too_strict.append(f"{struct.__name__}.{field.name} may be null at Plaid")

    assert too_strict == []


@pytest.mark.parametrize("person", ["ana", "bruno", "chen"])
def test_every_plaid_transaction_the_sandbox_makes_validates_before_and_after_time_passes(
    person: str,
) -> None:
    spec = spec_of("plaid")
    bank = TruthBook(7).bank(person)
    bank.advance(days=20)

    problems = []
    for change in sync_log(bank):
        name = "RemovedTransaction" if change.kind == "removed" else "Transaction"
        problems += spec.schema_errors(schema(name), change.body)
        problems += spec.undocumented(schema(name), change.body)

    assert {"added", "removed"} <= {c.kind for c in sync_log(bank)}
    assert problems == []


def test_every_plaid_error_type_our_table_reads_is_one_plaids_spec_declares() -> None:
    spec = spec_of("plaid")
    declared = set(spec.document["components"]["schemas"]["PlaidErrorType"]["enum"])

    # The type rows, and the pages the coverage test copies codes from.
    assert set(PLAID_ERROR_TYPES) <= declared
    assert set(PLAID_DOCUMENTED) <= declared


def test_the_vendored_mx_spec_is_the_pinned_file_and_keeps_its_mit_licence() -> None:
    pin = PINS["mx"]
    content = SPEC_FILES["mx"].read_bytes()
    licence = (SPEC_FILES["mx"].parent / "LICENSE").read_text()

    assert hashlib.sha256(content).hexdigest() == pin.sha256
    assert licence.startswith("MIT License") and "Copyright (c) 2021 MX" in licence


def exchange(**overrides: Any) -> Exchange:
    body = {"institutions": [{"code": "mxbank", "name": "MX Bank"}], "pagination": {}}
    fields: dict[str, Any] = {
        "provider": "mx",
        "method": "GET",
        "path": "/institutions",
        "query": [("page", "1"), ("records_per_page", "10")],
        "headers": {"Accept": "application/vnd.mx.api.v1+json", "Authorization": "Basic eDp5"},
        "body": b"",
        "status": 200,
        "content_type": "application/vnd.mx.api.v1+json; charset=utf-8",
        "answer": json.dumps(body).encode(),
    }
    return Exchange(**{**fields, **overrides})


def test_the_checker_passes_a_conforming_exchange() -> None:
    spec = spec_of("mx")

    assert request_problems(spec, exchange()) + response_problems(spec, exchange()) == []


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"query": [("records_per_page", "1")]}, "records_per_page=1 is outside 10..100"),
        ({"query": [("records_per_page", "101")]}, "records_per_page=101 is outside 10..100"),
        ({"query": [("per_page", "10")]}, "query parameter 'per_page' is not documented"),
        ({"query": [("page", "one")]}, "query parameter page='one' is not an integer"),
        ({"headers": {"Authorization": "Basic eDp5"}}, "Accept None is none of"),
        ({"headers": {"Accept": "application/vnd.mx.api.v1+json"}}, "no HTTP Basic"),
        ({"path": "/institutions/mxbank/logo"}, "no such operation in the spec"),
        ({"method": "POST", "body": b"{}"}, "no such operation in the spec"),
    ],
)
def test_the_checker_refuses_a_request_the_spec_does_not_allow(
    overrides: dict[str, Any], problem: str
) -> None:
    spec = spec_of("mx")

    found = request_problems(spec, exchange(**overrides))

    assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"institutions": [{"code": 7}]}, "institutions/0/code: 7 is not of type 'string'"),
        ({"institutions": [{"code": "x", "logo": "y"}]}, "institutions[0].logo: not documented"),
        ({"institution": {"code": "x"}}, "institution: not documented"),
    ],
)
def test_the_checker_refuses_an_answer_the_spec_does_not_allow(
    answer: dict[str, Any], problem: str
) -> None:
    spec = spec_of("mx")

    found = response_problems(spec, exchange(answer=json.dumps(answer).encode()))

    assert any(problem in p for p in found), found


def test_the_checker_finds_what_the_sandbox_s_plaid_transactions_used_to_lack() -> None:
    spec = spec_of("plaid")
    before = {
        "transaction_id": "t",
        "pending_transaction_id": None,
        "account_id": "a",
        "amount": 4.5,
        "iso_currency_code": "USD",
        "unofficial_currency_code": None,
        "date": "2025-01-30",
        "authorized_date": "2025-01-29",
        "name": "Blue Bottle Coffee",
        "merchant_name": "Blue Bottle Coffee",
        "pending": False,
        "payment_channel": "in store",
    }

    found = spec.schema_errors(schema("Transaction"), before)

    missing = {"account_owner", "location", "payment_meta", "datetime", "authorized_datetime"}
    assert {f"(body): '{name}' is a required property" for name in missing} <= set(found)
    assert "(body): 'transaction_code' is a required property" in found

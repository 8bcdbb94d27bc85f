"""Checking HTTP exchanges against a provider's official OpenAPI document.

`load_spec(provider)` reads the vendored (or, for Plaid, fetched) spec once;
`request_problems` and `response_problems` say, in plain sentences, where a
request we sent or an answer the sandbox gave departs from it:

- the operation (method and path template) must be in the spec;
- bodies must validate against the operation's schema (OpenAPI 3.0 rules:
  `nullable`, `required`, enums, formats), with `openapi-schema-validator`;
- no body may carry a field the schema does not document, even where the
  schema allows additional properties (Plaid's do, so clients tolerate new
  fields; a sandbox that invents fields, or an adapter that sends them, is
  wrong all the same: Plaid refuses unknown request fields);
- query parameters must be documented for the operation and of their type;
  MX's `records_per_page` must be within the range its description states;
- MX requests must ask for the media type the operation answers in and
  authenticate with HTTP Basic; answers must come in the documented type.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from openapi_schema_validator import OAS30Validator

Provider = Literal["plaid", "mx"]
SPECS_DIR = Path(__file__).parent
SPEC_FILES: dict[Provider, Path] = {
    "plaid": SPECS_DIR / "plaid" / "2020-09-14.yml",
    "mx": SPECS_DIR / "mx" / "v20111101.yml",
}
# "The valid range is from `10` to `1000`" in MX's records_per_page descriptions.
_RANGE = re.compile(r"valid range is from `(\d+)` to `(\d+)`")


class Exchange(msgspec.Struct, kw_only=True):
    """One HTTP request to a provider and its answer, as seen on the wire.

    `path` is the provider's own path (without the sandbox's `/plaid` or `/mx`).
    """

    provider: Provider
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    status: int
    content_type: str
    answer: bytes

    def label(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    template: str
    method: str
    spec: dict[str, Any]


class Spec:
    """One provider's OpenAPI document, with its operations found by method and path."""

    def __init__(self, provider: Provider, document: dict[str, Any]) -> None:
        self.provider = provider
        self.document = document
        self._routes = [
            (re.compile("^" + re.sub(r"\{[^}/]+\}", "[^/]+", template) + "$"), template)
            for template in document["paths"]
        ]

    def operation(self, method: str, path: str) -> Operation | None:
        # A literal path ("/users") wins over a template that also matches it.
        matches = [t for pattern, t in self._routes if pattern.match(path)]
        for template in sorted(matches, key=lambda t: t.count("{")):
            found = self.document["paths"][template].get(method.lower())
            if found is not None:
                return Operation(template=template, method=method.upper(), spec=found)
        return None

    def resolve(self, node: Mapping[str, Any]) -> dict[str, Any]:
        """`node` with its `$ref` (to this document) followed, repeatedly."""
        seen = 0
        while "$ref" in node:
            seen += 1
            if seen > 50:
                raise ValueError(f"a $ref cycle at {node['$ref']}")
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return dict(node)

    def schema_errors(self, schema: Mapping[str, Any], instance: Any) -> list[str]:
        validator = self._validator(json.dumps(schema, sort_keys=True))
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        ]

    @functools.cache  # noqa: B019 - specs live for the whole test session
    def _validator(self, schema_json: str) -> OAS30Validator:
        root = {**json.loads(schema_json), "components": self.document["components"]}
        return OAS30Validator(root, format_checker=OAS30Validator.FORMAT_CHECKER)

    def undocumented(self, schema: Mapping[str, Any], instance: Any, at: str = "") -> list[str]:
        """Fields of `instance` that `schema` does not document (free-form objects aside)."""
        schema = self.resolve(schema)
        if isinstance(instance, list):
            items = schema.get("items")
            if items is None:
                return []
            return [
                found
                for n, item in enumerate(instance)
                for found in self.undocumented(items, item, f"{at}[{n}]")
            ]
        if not isinstance(instance, dict):
            return []
        properties = self._properties(schema)
        if properties is None:
            return []
        found: list[str] = []
        for key, value in instance.items():
            where = f"{at}.{key}" if at else key
            if key not in properties:
                found.append(where)
            else:
                found.extend(self.undocumented(properties[key], value, where))
        return found

    def _properties(self, schema: Mapping[str, Any]) -> dict[str, Any] | None:
        """Every property `schema` documents (across allOf/oneOf/anyOf), None if free-form."""
        schema = self.resolve(schema)
        properties: dict[str, Any] | None = None
        if "properties" in schema:
            properties = dict(schema["properties"])
        for key in ("allOf", "oneOf", "anyOf"):
            for part in schema.get(key, []):
                more = self._properties(part)
                if more is not None:
                    properties = {**(properties or {}), **more}
        return properties


@functools.cache
def load_spec(provider: Provider) -> Spec | None:
    """The provider's spec, or None if its file is not on this machine (see README.md)."""
    path = SPEC_FILES[provider]
    if not path.exists():
        return None
    with path.open("rb") as f:
        document = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader, C or Python
    return Spec(provider, document)


def _media_type(value: str) -> str:
    return value.split(";", maxsplit=1)[0].strip().lower()


def _json(raw: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(raw), None
    except ValueError as exc:
        return None, f"body is not JSON: {exc}"


def _body_problems(
    spec: Spec, content: Mapping[str, Any], media_type: str, raw: bytes, allowed: Sequence[str]
) -> list[str]:
    if media_type not in content:
        return [f"media type {media_type!r} is not one of {sorted(content)}"]
    schema = content[media_type].get("schema")
    body, error = _json(raw)
    if error is not None:
        return [error]
    if schema is None:
        return []
    problems = spec.schema_errors(schema, body)
    problems += [
        f"{field}: not documented"
        for field in spec.undocumented(schema, body)
        if _generic(field) not in allowed
    ]
    return problems


def _generic(field: str) -> str:
    """`added[3].location.city` -> `added[].location.city`, to match allowed extensions."""
    return re.sub(r"\[\d+\]", "[]", field)


def records_per_page_range(spec: Spec, parameter: Mapping[str, Any]) -> tuple[int, int] | None:
    found = _RANGE.search(spec.resolve(parameter).get("description", ""))
    return (int(found[1]), int(found[2])) if found else None


def _query_problems(spec: Spec, operation: Operation, query: list[tuple[str, str]]) -> list[str]:
    parameters = {
        p["name"]: p
        for p in (spec.resolve(raw) for raw in operation.spec.get("parameters", []))
        if p.get("in") == "query"
    }
    problems: list[str] = []
    for name, value in query:
        parameter = parameters.get(name)
        if parameter is None:
            problems.append(f"query parameter {name!r} is not documented")
            continue
        schema = spec.resolve(parameter.get("schema", {}))
        typed: Any = value
        if schema.get("type") == "integer":
            if not re.fullmatch(r"-?\d+", value):
                problems.append(f"query parameter {name}={value!r} is not an integer")
                continue
            typed = int(value)
        elif schema.get("type") == "boolean":
            typed = {"true": True, "false": False}.get(value, value)
        elif schema.get("type") == "array":
            typed = [value]
        problems += [f"query parameter {name}: {e}" for e in spec.schema_errors(schema, typed)]
        if name == "records_per_page" and isinstance(typed, int):
            bounds = records_per_page_range(spec, parameter)
            if bounds is None:
                problems.append("records_per_page's description no longer states its range")
            elif not bounds[0] <= typed <= bounds[1]:
                problems.append(f"records_per_page={typed} is outside {bounds[0]}..{bounds[1]}")
    return problems


def request_problems(spec: Spec, exchange: Exchange) -> list[str]:
    """Where the request in `exchange` departs from the spec (empty: it conforms)."""
    operation = spec.operation(exchange.method, exchange.path)
    if operation is None:
        return [f"{exchange.method} {exchange.path}: no such operation in the spec"]
    problems = _query_problems(spec, operation, exchange.query)
    headers = {k.lower(): v for k, v in exchange.headers.items()}
    if spec.provider == "mx":
        answers = {
            media
            for response in operation.spec.get("responses", {}).values()
            for media in spec.resolve(response).get("content", {})
        }
        accepted = {_media_type(m) for m in headers.get("accept", "").split(",")}
        if answers and not answers & accepted:
            problems.append(f"Accept {headers.get('accept')!r} is none of {sorted(answers)}")
        if not headers.get("authorization", "").startswith("Basic "):
            problems.append("no HTTP Basic authorization")
    body_spec = operation.spec.get("requestBody")
    if body_spec is None:
        if exchange.body:
            problems.append("a body where the operation takes none")
    elif exchange.body or spec.resolve(body_spec).get("required"):
        media_type = _media_type(headers.get("content-type", ""))
        content = spec.resolve(body_spec)["content"]
        problems += _body_problems(spec, content, media_type, exchange.body, ())
    return [f"request {exchange.label()}: {p}" for p in problems]


def response_problems(
    spec: Spec, exchange: Exchange, *, allowed_extensions: Sequence[str] = ()
) -> list[str]:
    """Where the answer in `exchange` departs from the spec (empty: it conforms).

    `allowed_extensions` names undocumented fields the sandbox knowingly sends
    (generic paths like `transactions[].is_deleted`), each with a reason where
    it is passed.
    """
    operation = spec.operation(exchange.method, exchange.path)
    if operation is None:
        return [f"response {exchange.label()}: no such operation in the spec"]
    responses = operation.spec.get("responses", {})
    documented = responses.get(str(exchange.status)) or responses.get("default")
    if documented is None:
        return [f"response {exchange.label()}: status not documented ({sorted(responses)})"]
    content = spec.resolve(documented).get("content")
    if not content:
        problems = ["a body where the spec documents none"] if exchange.answer.strip() else []
    else:
        problems = _body_problems(
            spec, content, _media_type(exchange.content_type), exchange.answer, allowed_extensions
        )
    return [f"response {exchange.label()}: {p}" for p in problems]

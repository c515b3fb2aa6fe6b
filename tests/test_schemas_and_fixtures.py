"""The schema files themselves, the seed documents' examples against them, the mock's responses
against them, and the documents the mock serves besides the two edit endpoints."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT, load_fixture, make_client
from imaging import b64_png, data_uri, image_bytes
from jsonschema import Draft202012Validator
from schema_data import error_field, has_error_field, with_count

from mockserver.core.schemas import strict_variant
from mockserver.providers import PROVIDERS as REGISTERED

PT, MV, DS = "powertokens", "modelverse", "dashscope"
# Every provider registered: each must hold to what these tests ask of all of them.
PROVIDERS = tuple(p.name for p in REGISTERED)
KINDS = ("request", "response", "error")
PATHS = {p.name: p.path for p in REGISTERED}
SOURCES = {"doc", "upstream", "assumption"}
SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def load_schema(provider: str, kind: str) -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / provider / f"{kind}.json").read_text())


SCHEMAS = {(p, k): load_schema(p, k) for p in PROVIDERS for k in KINDS}
ALL = sorted(SCHEMAS)
ALL_IDS = [f"{p}-{k}" for p, k in ALL]


def errors_of(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = Draft202012Validator(schema)
    return sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance))


# ------------------------------------------------------------------------ the schema files


@pytest.mark.parametrize(("provider", "kind"), ALL, ids=ALL_IDS)
def test_schema_is_a_valid_2020_12_schema(provider, kind):
    schema = SCHEMAS[provider, kind]
    assert schema["$schema"] == SCHEMA_URI
    assert schema["$id"].endswith(f"/{provider}/{kind}.json")
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(("provider", "kind"), ALL, ids=ALL_IDS)
def test_strict_variant_is_a_valid_schema_too(provider, kind):
    strict = strict_variant(SCHEMAS[provider, kind])
    Draft202012Validator.check_schema(strict)
    assert "x-strict" not in json.dumps(strict)


SEED_EXAMPLES = [
    ("powertokens-request.json", PT, "request"),
    ("powertokens-response.json", PT, "response"),
    ("modelverse-request.json", MV, "request"),
    ("modelverse-response.json", MV, "response"),
    ("modelverse-error.json", MV, "error"),
    ("dashscope-request.json", DS, "request"),
    ("dashscope-response.json", DS, "response"),
    ("dashscope-error.json", DS, "error"),
]


@pytest.mark.parametrize(("fixture", "provider", "kind"), SEED_EXAMPLES, ids=[f for f, _, _ in SEED_EXAMPLES])
def test_seed_example_validates(fixture, provider, kind):
    assert errors_of(SCHEMAS[provider, kind], load_fixture(f"seed/{fixture}")) == []


def test_every_seed_fixture_is_checked():
    on_disk = sorted(path.name for path in (ROOT / "fixtures" / "seed").glob("*.json"))
    assert on_disk == sorted(f for f, _, _ in SEED_EXAMPLES)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_request_schema_rejects_what_spec_forbids(provider):
    """The schemas are not vacuous: an out-of-range ``n`` fails them."""
    body = with_count(provider, load_fixture(f"seed/{provider}-request.json"), 7)
    assert errors_of(SCHEMAS[provider, "request"], body) != []


def test_powertokens_request_schema_forbids_top_level_parameters():
    body = load_fixture("seed/powertokens-request.json")
    body["parameters"] = {"n": 1}
    assert errors_of(SCHEMAS[PT, "request"], body) != []


# --------------------------------------------------------------------------------- x-source

# Keywords that constrain or default a value: each needs a source.
CONSTRAINTS = {
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "uniqueItems", "contains",
    "minContains", "maxContains", "required", "minProperties", "maxProperties", "additionalProperties",
    "dependentRequired", "not", "anyOf", "oneOf", "allOf", "default", "x-size", "x-image", "x-output-size",
}
# Keywords whose values are subschemas (or lists or maps of them).
SUBSCHEMA_LIST = {"allOf", "anyOf", "oneOf", "prefixItems"}
SUBSCHEMA_ONE = {"items", "contains", "not", "additionalProperties", "if", "then", "else"}
SUBSCHEMA_MAP = {"properties", "$defs", "patternProperties"}
# Keywords of this project holding several rules each, with their own x-source.
RULE_BLOCKS = ("x-image", "x-size", "x-output-size")


def x_source_values(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "x-source":
                yield from (value.values() if isinstance(value, dict) else [value])
            else:
                yield from x_source_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from x_source_values(value)


@pytest.mark.parametrize(("provider", "kind"), ALL, ids=ALL_IDS)
def test_x_source_values_are_only_the_three_sources(provider, kind):
    values = list(x_source_values(SCHEMAS[provider, kind]))
    assert values, "the schema carries no x-source at all"
    assert set(values) <= SOURCES, set(values) - SOURCES


def source_gaps(node: dict[str, Any], path: str, inherited: str | None, is_property: bool) -> Iterator[str]:
    """Where a constraint has no source.

    A property (an entry of ``properties`` or ``$defs``) that constrains anything must carry its
    own ``x-source``; a string covers all its keywords, a map must name each keyword the property
    uses (``x-strict`` ones included). Subschemas nested inside a property (``allOf`` entries,
    ``contains``...) inherit the property's string, or its map's entry for the keyword they sit
    under.
    """
    own = node.get("x-source")
    own_map = own if isinstance(own, dict) else {}
    covering = own if isinstance(own, str) else None if is_property else inherited
    keywords = [k for k in node if k in CONSTRAINTS] + [k for k in node.get("x-strict", {}) if k in CONSTRAINTS]
    if is_property and keywords and own is None:
        yield f"{path}: no x-source (constrains {sorted(set(keywords))})"
    for keyword in keywords:
        if keyword in RULE_BLOCKS and "x-source" in node[keyword]:
            continue  # the block names its own sources; see the rule-block test
        if own_map.get(keyword, covering) is None:
            yield f"{path}: {keyword!r} has no source"
    for keyword, value in node.items():
        inherit = own_map.get(keyword, covering)
        if keyword in SUBSCHEMA_MAP and isinstance(value, dict):
            for name, child in value.items():
                if isinstance(child, dict):
                    yield from source_gaps(child, f"{path}/{keyword}/{name}", inherit, is_property=True)
        elif keyword in SUBSCHEMA_LIST and isinstance(value, list):
            for i, child in enumerate(value):
                if isinstance(child, dict):
                    yield from source_gaps(child, f"{path}/{keyword}/{i}", inherit, is_property=False)
        elif keyword in SUBSCHEMA_ONE and isinstance(value, dict):
            yield from source_gaps(value, f"{path}/{keyword}", inherit, is_property=False)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_constraint_in_the_request_schema_has_a_source(provider):
    schema = SCHEMAS[provider, "request"]
    assert schema.get("x-source") in SOURCES
    assert list(source_gaps(schema, "#", None, is_property=True)) == []


def rule_blocks(node: Any, path: str = "#") -> Iterator[tuple[str, str, dict[str, Any], Any]]:
    """Every ``x-image`` / ``x-size`` / ``x-output-size`` block with the x-source of the
    subschema holding it."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in RULE_BLOCKS and isinstance(value, dict):
                yield f"{path}/{key}", key, value, node.get("x-source")
            else:
                yield from rule_blocks(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from rule_blocks(value, f"{path}/{i}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_rule_of_the_image_and_size_blocks_has_a_source(provider):
    """``x-image`` and ``x-size`` hold several rules each (schemes, byte limit, pixel range...):
    each rule needs a source, from the block's own x-source or the holding subschema's entry for
    the block."""
    blocks = list(rule_blocks(SCHEMAS[provider, "request"]))
    assert blocks
    gaps = []
    for path, keyword, block, holder_source in blocks:
        own = block.get("x-source")
        from_holder = holder_source if isinstance(holder_source, str) else (holder_source or {}).get(keyword)
        for rule in block:
            if rule == "x-source":
                continue
            source = own.get(rule) if isinstance(own, dict) else own
            source = source or from_holder
            if source not in SOURCES:
                gaps.append(f"{path}/{rule}")
    assert gaps == []


def test_source_gap_finder_finds_gaps():
    """The walker above can fail: a property without x-source, or a map missing a keyword."""
    schema = {"type": "object", "x-source": "doc", "properties": {
        "a": {"type": "integer", "minimum": 1},
        "b": {"type": "integer", "maximum": 3, "x-source": {"type": "doc"}},
        "c": {"type": "string", "x-strict": {"maxLength": 5}, "x-source": {"type": "doc"}},
        "d": {"type": "string", "x-source": "upstream", "allOf": [{"minLength": 1}]},
    }}
    gaps = list(source_gaps(schema, "#", None, is_property=True))
    assert any(g.startswith("#/properties/a:") for g in gaps)
    assert any(g.startswith("#/properties/b:") and "maximum" in g for g in gaps)
    assert any(g.startswith("#/properties/c:") and "maxLength" in g for g in gaps)
    assert not any(g.startswith("#/properties/d") for g in gaps)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_catalogue_entries_carry_a_source(provider):
    catalogue = SCHEMAS[provider, "error"]["x-errors"]
    for kind in ("invalid_parameter", "authentication", "not_found", "method_not_allowed", "internal_error"):
        assert kind in catalogue
    for kind, entry in catalogue.items():
        assert entry.get("x-source") in SOURCES, kind
        assert isinstance(entry["status"], int) and isinstance(entry["code"], str)
        # A type only where the envelope has a place for one.
        assert isinstance(entry.get("type"), str) == has_error_field(provider, "type"), kind


def test_error_catalogues_match_spec():
    pt = SCHEMAS[PT, "error"]["x-errors"]
    mv = SCHEMAS[MV, "error"]["x-errors"]
    assert (pt["invalid_parameter"]["status"], pt["invalid_parameter"]["code"]) == (400, "InvalidParameter")
    assert (pt["authentication"]["status"], pt["authentication"]["code"]) == (401, "InvalidApiKey")
    assert (pt["rate_limit"]["status"], pt["rate_limit"]["code"]) == (429, "Throttling.RateQuota")
    assert (pt["moderation"]["status"], pt["moderation"]["code"]) == (400, "DataInspectionFailed")
    assert (pt["internal_error"]["status"], pt["internal_error"]["code"]) == (500, "InternalError")
    expected_mv = {
        "invalid_parameter": (400, "invalid_request_error", "param_error"),
        "moderation": (400, "invalid_request_error", "sensitive_check_error"),
        "unknown_model": (400, "invalid_request_error", "model_error"),
        "authentication": (401, "invalid_request_error", "auth_error"),
        "timeout": (408, "timeout", "timeout"),
        "rate_limit": (429, "rate_limit_error", "rate_limit"),
        "internal_error": (500, "internal_error", "internal_error"),
        "gateway_timeout": (504, "timeout", "gateway_timeout_error"),
    }
    for kind, (status, type_, code) in expected_mv.items():
        assert (mv[kind]["status"], mv[kind]["type"], mv[kind]["code"]) == (status, type_, code), kind


def test_url_lifetimes_match_spec():
    def lifetime(provider):
        return SCHEMAS[provider, "response"]["$defs"]["image"]["properties"]["url"]["x-expires-after"]

    assert lifetime(PT) == 24 * 3600
    assert lifetime(MV) == 7 * 24 * 3600


# -------------------------------------------------------------- the mock's responses validate


def sendable(provider: str) -> dict[str, Any]:
    body = copy.deepcopy(load_fixture(f"seed/{provider}-request.json"))
    if provider == MV:
        body["image"] = data_uri(image_bytes())
    else:
        body["size"] = "512*512"  # keep b64_json rendering cheap
    return body


RESPONSE_CASES = [
    (PT, "url", {}, {}),
    (PT, "b64_json", {}, {}),
    (PT, "url", {"prompt_extend": False}, {}),
    (PT, "b64_json", {"prompt_extend": False, "n": 1}, {}),
    (MV, "url", {}, {}),
    (MV, "b64_json", {"n": 2}, {}),
    (MV, "b64_json", {}, {"modelverse_b64_style": "plain"}),
    (MV, "url", {"image": "https://example.com/a.png"}, {}),
]


@pytest.mark.parametrize(("provider", "response_format", "extra", "settings"), RESPONSE_CASES,
                         ids=[f"{p}-{f}-{i}" for i, (p, f, _, _) in enumerate(RESPONSE_CASES)])
def test_mock_response_validates_against_response_schema_and_strict_variant(provider, response_format, extra, settings):
    body = {**sendable(provider), **extra, "response_format": response_format}
    with make_client(**settings) as test_client:
        response = test_client.post(PATHS[provider], json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    schema = SCHEMAS[provider, "response"]
    assert errors_of(schema, payload) == []
    assert errors_of(strict_variant(schema), payload) == []
    assert len(payload["data"]) == body.get("n", 1)
    for item in payload["data"]:
        assert set(item) - {"revised_prompt"} == {response_format}, item
        if response_format == "b64_json":
            b64_png(item["b64_json"])  # decodes as a PNG
        if provider == PT:
            assert ("revised_prompt" in item) == body.get("prompt_extend", True)
    if provider == MV and response_format == "b64_json":
        plain = settings.get("modelverse_b64_style") == "plain"
        assert all(item["b64_json"].startswith("data:image/png;base64,") != plain for item in payload["data"])


def test_strict_response_schema_rejects_both_url_and_b64():
    """The strict variant is not vacuous: the document's own example (url and b64_json in
    one item) fails it, and an unknown top-level key fails it."""
    for provider in [p for p in PROVIDERS if "b64" in SCHEMAS[p, "response"]["x-contract"]]:
        strict = strict_variant(SCHEMAS[provider, "response"])
        assert errors_of(strict, load_fixture(f"seed/{provider}-response.json")) != []
        assert errors_of(strict, {"created": 1, "data": [{"url": "http://x/y.png"}], "surprise": 1}) != []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_mock_error_validates_against_error_schema(client, provider):
    body = with_count(provider, sendable(provider), 99)
    response = client.post(PATHS[provider], json=body)
    assert response.status_code == 400
    assert errors_of(SCHEMAS[provider, "error"], response.json()) == []
    assert errors_of(strict_variant(SCHEMAS[provider, "error"]), response.json()) == []


# --------------------------------------------------------------------------- /openapi.json


@pytest.fixture
def openapi(client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    return response.json()


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = document
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        else:
            assert isinstance(node, dict) and part in node, f"{ref}: no {part!r}"
            node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def operation_schema(document: dict[str, Any], path: str, status: str | None = None) -> dict[str, Any]:
    operation = document["paths"][path]["post"]
    holder = operation["requestBody"] if status is None else operation["responses"][status]
    schema = holder["content"]["application/json"]["schema"]
    return resolve(document, schema["$ref"]) if "$ref" in schema else schema


def test_openapi_is_3_1_with_both_paths(openapi):
    assert openapi["openapi"].startswith("3.1")
    assert openapi["info"]["title"] and openapi["info"]["version"]
    for provider in PROVIDERS:
        operation = openapi["paths"][PATHS[provider]]["post"]
        assert operation["requestBody"]["required"] is True
        assert "200" in operation["responses"] and "400" in operation["responses"] and "401" in operation["responses"]


def test_openapi_every_ref_resolves(openapi):
    found = list(refs(openapi))
    assert len(found) >= 6
    for ref in found:
        target = resolve(openapi, ref)
        assert isinstance(target, dict), ref


def unembedded(component: dict[str, Any], name: str) -> dict[str, Any]:
    """An OpenAPI component as its schema file had it: its $refs pointing into itself again,
    and without the formats the document adds to x-image / x-size nodes for tools."""
    schema = copy.deepcopy(component)
    prefix = f"#/components/schemas/{name}/"
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and node["$ref"].startswith(prefix):
                node["$ref"] = "#/" + node["$ref"][len(prefix):]
            if "x-image" in node or "x-size" in node:
                node.pop("format", None)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", KINDS)
def test_openapi_schemas_are_the_files(openapi, provider, kind):
    name = f"{provider.capitalize()}{kind.capitalize()}"
    on_disk = {k: v for k, v in SCHEMAS[provider, kind].items() if k not in ("$id", "$schema")}
    assert unembedded(openapi["components"]["schemas"][name], name) == on_disk
    responses = openapi["paths"][PATHS[provider]]["post"]["responses"]
    statuses = {str(entry["status"]) for entry in SCHEMAS[provider, "error"]["x-errors"].values()}
    assert statuses | {"200"} <= set(responses)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_openapi_schemas_validate_the_seed_examples(openapi, provider):
    """Used as a schema (its $refs resolved within the document), the OpenAPI document accepts
    the seed examples and rejects an out-of-range n."""
    def schema_at(path: str, status: str | None) -> dict[str, Any]:
        operation = openapi["paths"][path]["post"]
        holder = operation["requestBody"] if status is None else operation["responses"][status]
        return {**copy.deepcopy(openapi), **holder["content"]["application/json"]["schema"]}

    request_schema = schema_at(PATHS[provider], None)
    example = load_fixture(f"seed/{provider}-request.json")
    assert errors_of(request_schema, example) == []
    assert errors_of(request_schema, with_count(provider, example, 99)) != []
    response_schema = schema_at(PATHS[provider], "200")
    assert errors_of(response_schema, load_fixture(f"seed/{provider}-response.json")) == []
    assert errors_of(response_schema, {}) != []


def test_openapi_declares_bearer_security(openapi):
    schemes = openapi["components"]["securitySchemes"]
    assert any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values())
    for provider in PROVIDERS:
        security = openapi["paths"][PATHS[provider]]["post"]["security"]
        assert all(name in schemes for requirement in security for name in requirement)


# ----------------------------------------------------------------- /healthz, 404, 405


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["x-request-id"]


def test_healthz_needs_no_auth():
    with make_client() as test_client:
        del test_client.headers["authorization"]
        assert test_client.get("/healthz").status_code == 200
        assert test_client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", ["/nope", "/v1/images/variations", "/v1/images", "/v2/images/edits"])
def test_unknown_path_is_404_json(client, method, path):
    response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["code"], str) and isinstance(error["type"], str)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_in_the_providers_envelope(client, provider, method):
    response = client.request(method, PATHS[provider])
    assert response.status_code == 405, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "POST" in [m.strip() for m in response.headers["allow"].split(",")]
    request_id = response.headers["x-request-id"]
    assert request_id
    body = response.json()
    assert errors_of(SCHEMAS[provider, "error"], body) == []
    expected = SCHEMAS[provider, "error"]["x-errors"]["method_not_allowed"]
    assert error_field(provider, body, "code") == expected["code"]
    if has_error_field(provider, "type"):
        assert error_field(provider, body, "type") == expected["type"]
    assert method in error_field(provider, body, "message")
    if has_error_field(provider, "request_id"):
        assert error_field(provider, body, "request_id") == request_id

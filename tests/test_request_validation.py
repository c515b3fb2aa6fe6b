"""Request validation for both providers, at the edges of every rule.

The ranges and enums are read from ``schemas/<provider>/request.json`` so the edge tests follow
the schemas; ``test_schema_ranges_match_spec`` and ``test_schema_enums_match_spec`` pin the
schema numbers to SPEC.md's tables, so a drift in either shows up.

An accepted request answers 200; a rejected one answers 400 with the offending field named:
for powertokens in ``error.param`` (a JSON path) and in ``error.message``; for modelverse at the
start of ``error.message`` (its ``error.param`` is the request id, as its document says).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from conftest import ROOT, load_fixture, make_client
from imaging import data_uri, image_bytes
from jsonschema import Draft202012Validator

PT, MV = "powertokens", "modelverse"
PATHS = {PT: "/v1/images/edits", MV: "/v1/images/generations"}
PROVIDERS = (PT, MV)


def load_schema(provider: str, name: str) -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / provider / f"{name}.json").read_text())


REQUEST_SCHEMAS = {p: load_schema(p, "request") for p in PROVIDERS}
ERROR_VALIDATORS = {p: Draft202012Validator(load_schema(p, "error")) for p in PROVIDERS}
DEFAULT_CODE = {PT: "InvalidParameter", MV: "param_error"}
AUTH_CODE = {PT: "InvalidApiKey", MV: "auth_error"}

SEED_MAX = 2147483647
TEXT = "input.messages[0].content[1].text"  # the text item's path in the seed example
CONTENT = "input.messages[0].content"
IMAGE_URL = "https://example.com/source.png"
SMALL_PNG = data_uri(image_bytes())  # 64x48: below the recommended side, a warning only
STRICT_PNG = data_uri(image_bytes(384, 384))  # the smallest recommended side: fine in strict mode


# --------------------------------------------------------------------------- helpers


def base_body(provider: str) -> dict[str, Any]:
    """The seed document's example request, made sendable (modelverse gets a real image)."""
    body = copy.deepcopy(load_fixture(f"seed/{provider}-request.json"))
    if provider == MV:
        body["image"] = SMALL_PNG
    return body


def with_field(provider: str, field: str, value: Any) -> dict[str, Any]:
    body = base_body(provider)
    body[field] = value
    return body


def pt_with_content(content: list[Any]) -> dict[str, Any]:
    body = base_body(PT)
    body["input"]["messages"][0]["content"] = content
    return body


def post(client, provider: str, body: Any, **kwargs):
    return client.post(PATHS[provider], json=body, **kwargs)


def assert_accepted(response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def assert_error_envelope(response, provider: str, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    errors = sorted(ERROR_VALIDATORS[provider].iter_errors(body), key=str)
    assert not errors, [e.message for e in errors]
    error = body["error"]
    assert error["code"] == code, error
    request_id = response.headers["x-request-id"]
    assert request_id
    if provider == MV:
        # The documented envelope carries the request id in ``param``.
        assert error["param"] == request_id, (error, request_id)
    return error


def assert_rejected(response, provider: str, field: str, code: str | None = None) -> dict[str, Any]:
    """400 in the provider's envelope, naming ``field``."""
    error = assert_error_envelope(response, provider, 400, code or DEFAULT_CODE[provider])
    assert error["type"] == "invalid_request_error", error
    if provider == PT:
        assert error["param"] == field, error
        assert field in error["message"], error
    else:
        assert error["message"].startswith(f"{field}:"), error
    return error


def header_json_list(response, name: str) -> list[str]:
    assert name in response.headers, dict(response.headers)
    value = json.loads(response.headers[name])
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), value
    return value


# ---------------------------------------------------------- ranges, derived from the schemas


def numeric_ranges(provider: str) -> dict[str, tuple[str, float, float]]:
    """Top-level properties with ``minimum``/``maximum``: name -> (type, minimum, maximum)."""
    return {
        name: (prop["type"], prop["minimum"], prop["maximum"])
        for name, prop in REQUEST_SCHEMAS[provider]["properties"].items()
        if "minimum" in prop and "maximum" in prop
    }


def enums(provider: str) -> dict[str, list[Any]]:
    """Each property's enum, also where it sits in an ``allOf`` (to carry its own error kind)."""
    found = {}
    for name, prop in REQUEST_SCHEMAS[provider]["properties"].items():
        for node in [prop, *prop.get("allOf", [])]:
            if "enum" in node:
                found[name] = node["enum"]
    return found


NUMBER_STEP = 0.001


def step(kind: str) -> float:
    return 1 if kind == "integer" else NUMBER_STEP


RANGE_CASES = [(p, name, *rng) for p in PROVIDERS for name, rng in numeric_ranges(p).items()]
RANGE_IDS = [f"{p}-{name}" for p, name, *_ in RANGE_CASES]


def test_schema_ranges_match_spec():
    assert numeric_ranges(PT) == {"n": ("integer", 1, 6), "seed": ("integer", 0, SEED_MAX)}
    assert numeric_ranges(MV) == {
        "n": ("integer", 1, 4),
        "strength": ("number", 0, 1),
        "steps": ("integer", 1, 50),
        "guidance_scale": ("number", 1, 10),
    }
    seed = REQUEST_SCHEMAS[MV]["properties"]["seed"]
    assert seed["type"] == "integer"
    assert seed["anyOf"] == [{"const": -1}, {"minimum": 0, "maximum": SEED_MAX}]
    assert seed["default"] == -1
    size = REQUEST_SCHEMAS[PT]["properties"]["size"]["x-size"]
    assert (size["minPixels"], size["maxPixels"]) == (512 * 512, 2048 * 2048)
    assert sorted(size["separators"]) == ["*", "x"]


def test_schema_enums_match_spec():
    assert enums(PT) == {"model": ["qwen-image-2.0-pro"], "response_format": ["url", "b64_json"]}
    assert enums(MV) == {"model": ["Qwen/Qwen-Image-Edit"], "response_format": ["url", "b64_json"]}


@pytest.mark.parametrize(("provider", "field", "kind", "low", "high"), RANGE_CASES, ids=RANGE_IDS)
@pytest.mark.parametrize("edge", ["low", "high"])
def test_range_edge_accepted(client, provider, field, kind, low, high, edge):
    value = low if edge == "low" else high
    body = assert_accepted(post(client, provider, with_field(provider, field, value)))
    if field == "n":
        assert len(body["data"]) == value


@pytest.mark.parametrize(("provider", "field", "kind", "low", "high"), RANGE_CASES, ids=RANGE_IDS)
@pytest.mark.parametrize("edge", ["low", "high"])
def test_one_step_past_range_rejected(client, provider, field, kind, low, high, edge):
    value = low - step(kind) if edge == "low" else high + step(kind)
    assert_rejected(post(client, provider, with_field(provider, field, value)), provider, field)


@pytest.mark.parametrize(
    ("field", "value"),
    [("strength", 0.5), ("strength", 1e-9), ("strength", 0.999999), ("guidance_scale", 1.0001), ("guidance_scale", 9.999)],
)
def test_modelverse_numbers_inside_range_accepted(client, field, value):
    assert_accepted(post(client, MV, with_field(MV, field, value)))


@pytest.mark.parametrize(
    ("field", "value"),
    [("strength", -1e-9), ("strength", 1.000001), ("guidance_scale", 0.999), ("guidance_scale", 0), ("guidance_scale", 10.001)],
)
def test_modelverse_numbers_just_outside_range_rejected(client, field, value):
    assert_rejected(post(client, MV, with_field(MV, field, value)), MV, field)


# ------------------------------------------------------------------------------ seeds


def test_powertokens_explicit_seed_zero_is_kept(client):
    response = post(client, PT, with_field(PT, "seed", 0))
    body = assert_accepted(response)
    assert response.headers["x-mock-seed"] == "0"
    assert body["metadata"]["parameters"]["seed"] == 0


def test_powertokens_seed_max_is_kept(client):
    response = post(client, PT, with_field(PT, "seed", SEED_MAX))
    body = assert_accepted(response)
    assert response.headers["x-mock-seed"] == str(SEED_MAX)
    assert body["metadata"]["parameters"]["seed"] == SEED_MAX


@pytest.mark.parametrize("value", [-1, SEED_MAX + 1, 2**63])
def test_powertokens_seed_out_of_range_rejected(client, value):
    assert_rejected(post(client, PT, with_field(PT, "seed", value)), PT, "seed")


@pytest.mark.parametrize("value", [0, 1, SEED_MAX])
def test_modelverse_seed_in_range_is_used(client, value):
    response = post(client, MV, with_field(MV, "seed", value))
    assert_accepted(response)
    assert response.headers["x-mock-seed"] == str(value)


def test_modelverse_seed_minus_one_means_random_but_reproducible(client):
    first = post(client, MV, with_field(MV, "seed", -1))
    assert_accepted(first)
    seed = int(first.headers["x-mock-seed"])
    assert 0 <= seed <= SEED_MAX
    second = post(client, MV, with_field(MV, "seed", -1))
    assert second.headers["x-mock-seed"] == first.headers["x-mock-seed"]


@pytest.mark.parametrize("value", [-2, -100, SEED_MAX + 1])
def test_modelverse_seed_out_of_range_rejected(client, value):
    assert_rejected(post(client, MV, with_field(MV, "seed", value)), MV, "seed")


# ------------------------------------------------------------------------------ enums


ENUM_ACCEPTED = [(p, field, value) for p in PROVIDERS for field, values in enums(p).items() for value in values]


@pytest.mark.parametrize(("provider", "field", "value"), ENUM_ACCEPTED)
def test_enum_value_accepted(client, provider, field, value):
    body = with_field(provider, field, value)
    if provider == PT and value == "b64_json":
        body.update(n=1, size="512*512")  # keep the rendering small
    data = assert_accepted(post(client, provider, body))["data"]
    if field == "response_format":
        assert all(value in item for item in data), data


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("value", ["URL", "png", "", "b64", "base64"])
def test_response_format_outside_enum_rejected(client, provider, value):
    assert_rejected(post(client, provider, with_field(provider, "response_format", value)), provider, "response_format")


@pytest.mark.parametrize("value", ["Qwen/Qwen-Image-Edit", "qwen-image-2.0", "QWEN-IMAGE-2.0-PRO", "qwen-image-2.0-pro ", ""])
def test_powertokens_unknown_model_is_invalid_parameter(client, value):
    error = assert_rejected(post(client, PT, with_field(PT, "model", value)), PT, "model", code="InvalidParameter")
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("value", ["qwen-image-2.0-pro", "qwen/qwen-image-edit", "Qwen/Qwen-Image-Edit-2509", ""])
def test_modelverse_unknown_model_is_model_error(client, value):
    assert_rejected(post(client, MV, with_field(MV, "model", value)), MV, "model", code="model_error")


@pytest.mark.parametrize("value", [5, None, True, ["Qwen/Qwen-Image-Edit"], {"name": "Qwen/Qwen-Image-Edit"}])
def test_modelverse_model_of_the_wrong_type_is_param_error(client, value):
    """model_error means an unknown model; a model that is not a string is a bad parameter."""
    assert_rejected(post(client, MV, with_field(MV, "model", value)), MV, "model", code="param_error")


# ---------------------------------------------------------------------- powertokens size


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("512*512", [512, 512]),
        ("2048*2048", [2048, 2048]),
        ("512x512", [512, 512]),
        ("1024x768", [1024, 768]),
        ("2048x2048", [2048, 2048]),
        ("4096*1024", [4096, 1024]),  # exactly the pixel maximum in another shape
        ("1024*256", [1024, 256]),  # exactly the pixel minimum in another shape
    ],
)
def test_powertokens_size_accepted_and_normalised(client, size, expected):
    body = assert_accepted(post(client, PT, with_field(PT, "size", size)))
    assert body["metadata"]["parameters"]["size"] == f"{expected[0]}*{expected[1]}"


def test_powertokens_size_defaults_to_512(client):
    body = base_body(PT)
    del body["size"]
    assert assert_accepted(post(client, PT, body))["metadata"]["parameters"]["size"] == "512*512"


@pytest.mark.parametrize(
    "size",
    [
        "512*511",  # one pixel row short of 512*512
        "511*512",
        "2048*2049",  # one pixel row past 2048*2048
        "2049*2048",
        "4097*1024",
        "1*1",
        "99999*99999",
        "99999999999*99999999999",
    ],
)
def test_powertokens_size_outside_pixel_range_rejected(client, size):
    error = assert_rejected(post(client, PT, with_field(PT, "size", size)), PT, "size")
    assert error["code"] == "InvalidParameter"


@pytest.mark.parametrize(
    "size",
    ["512", "512*", "*512", "a*b", "0*512", "512*0", "512 * 512", " 512*512", "512*512\n", "512*512*512",
     "-512*512", "512.0*512", "512,512", "512/512", "", "x", "*"],
)
def test_powertokens_malformed_size_rejected(client, size):
    assert_rejected(post(client, PT, with_field(PT, "size", size)), PT, "size")


# ---------------------------------------------------------------------------- wrong types


WRONG_TYPES = [
    # booleans for integers
    (PT, "n", True), (PT, "n", False), (PT, "seed", True), (MV, "n", True), (MV, "steps", True), (MV, "seed", False),
    # non-integers for integers
    (PT, "n", 1.5), (PT, "n", "1"), (PT, "n", None), (PT, "seed", "0"), (PT, "seed", 0.5),
    (MV, "n", "1"), (MV, "steps", 20.5), (MV, "steps", "20"), (MV, "seed", "-1"),
    # strings and booleans for numbers
    (MV, "strength", "0.5"), (MV, "strength", True), (MV, "strength", None), (MV, "guidance_scale", "2.5"),
    (MV, "guidance_scale", [2.5]),
    # numbers for strings
    (PT, "size", 512), (PT, "response_format", 1), (PT, "negative_prompt", 1), (MV, "prompt", 1),
    (MV, "image", 1), (MV, "negative_prompt", 0), (MV, "response_format", 1), (MV, "prompt", ["a"]),
    # anything but a boolean for booleans
    (PT, "watermark", "false"), (PT, "watermark", 0), (PT, "prompt_extend", 1), (PT, "prompt_extend", None),
    # containers
    (PT, "input", []), (PT, "input", "hello"),
]


@pytest.mark.parametrize(("provider", "field", "value"), WRONG_TYPES, ids=[f"{p}-{f}-{v!r}" for p, f, v in WRONG_TYPES])
def test_wrong_type_rejected(client, provider, field, value):
    assert_rejected(post(client, provider, with_field(provider, field, value)), provider, field)


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([{"image": IMAGE_URL}, {"text": 1}], TEXT),
        ([{"image": IMAGE_URL}, {"text": None}], TEXT),
        ([{"image": 1}, {"text": "a"}], f"{CONTENT}[0].image"),
        ([{"image": ["https://example.com/a.png"]}, {"text": "a"}], f"{CONTENT}[0].image"),
    ],
)
def test_powertokens_content_values_of_wrong_type_rejected(client, content, param):
    assert_rejected(post(client, PT, pt_with_content(content)), PT, param)


@pytest.mark.parametrize(
    ("mutate", "param"),
    [
        (lambda b: b["input"].update(messages={"role": "user"}), "input.messages"),
        (lambda b: b["input"].update(messages=["hello"]), "input.messages[0]"),
        (lambda b: b["input"]["messages"][0].update(content="hello"), CONTENT),
        (lambda b: b["input"]["messages"][0].update(role=1), "input.messages[0].role"),
    ],
    ids=["messages-object", "message-string", "content-string", "role-number"],
)
def test_powertokens_structure_of_wrong_type_rejected(client, mutate, param):
    body = base_body(PT)
    mutate(body)
    assert_rejected(post(client, PT, body), PT, param)


# -------------------------------------------------------------------- required and empty


def _delete(body: dict[str, Any], path: tuple[Any, ...]) -> None:
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]


REQUIRED = [
    (PT, ("model",), "model"),
    (PT, ("input",), "input"),
    (PT, ("input", "messages"), "input.messages"),
    (PT, ("input", "messages", 0, "role"), "input.messages[0].role"),
    (PT, ("input", "messages", 0, "content"), CONTENT),
    (MV, ("prompt",), "prompt"),
    (MV, ("model",), "model"),
    (MV, ("image",), "image"),
]


@pytest.mark.parametrize(("provider", "path", "field"), REQUIRED, ids=[f"{p}-{f}" for p, _, f in REQUIRED])
def test_missing_required_field_rejected(client, provider, path, field):
    body = base_body(provider)
    _delete(body, path)
    response = post(client, provider, body)
    # A missing model is a missing parameter (param_error), not an unknown model.
    error = assert_error_envelope(response, provider, 400, DEFAULT_CODE[provider])
    if provider == PT:
        assert error["param"] == field
    assert error["message"].startswith(f"{field}:"), error
    assert "missing" in error["message"] or "required" in error["message"], error


def test_required_fields_match_spec():
    assert sorted(REQUEST_SCHEMAS[PT]["required"]) == ["input", "model"]
    assert sorted(REQUEST_SCHEMAS[MV]["required"]) == ["image", "model", "prompt"]
    for provider in PROVIDERS:
        top_level = [path[0] for p, path, _ in REQUIRED if p == provider and len(path) == 1]
        assert sorted(top_level) == sorted(REQUEST_SCHEMAS[provider]["required"])


def test_powertokens_empty_text_rejected(client):
    assert_rejected(post(client, PT, pt_with_content([{"image": IMAGE_URL}, {"text": ""}])), PT, TEXT)


@pytest.mark.parametrize("field", ["prompt", "image"])
def test_modelverse_empty_string_rejected(client, field):
    assert_rejected(post(client, MV, with_field(MV, field, "")), MV, field)


def test_modelverse_minimal_request_accepted(client):
    body = {"model": "Qwen/Qwen-Image-Edit", "prompt": "p", "image": SMALL_PNG}
    assert len(assert_accepted(post(client, MV, body))["data"]) == 1


def test_powertokens_minimal_request_accepted(client):
    body = {"model": "qwen-image-2.0-pro", "input": {"messages": [{"role": "user", "content": [
        {"image": IMAGE_URL}, {"text": "p"}]}]}}
    data = assert_accepted(post(client, PT, body))["data"]
    assert len(data) == 1 and "url" in data[0]


# ---------------------------------------------------------------------- powertokens rules


@pytest.mark.parametrize("value", [{"n": 1}, {}, None, "n=1", 0])
def test_powertokens_top_level_parameters_rejected(client, value):
    error = assert_rejected(post(client, PT, with_field(PT, "parameters", value)), PT, "parameters")
    assert "top level" in error["message"], error


@pytest.mark.parametrize(
    "images",
    [
        [IMAGE_URL],
        [IMAGE_URL, "http://example.com/b.jpg", SMALL_PNG],
    ],
    ids=["1-image", "3-images"],
)
def test_powertokens_one_to_three_images_accepted(client, images):
    content = [{"image": image} for image in images] + [{"text": "blend them"}]
    assert_accepted(post(client, PT, pt_with_content(content)))


def test_powertokens_text_may_come_first(client):
    assert_accepted(post(client, PT, pt_with_content([{"text": "first"}, {"image": IMAGE_URL}])))


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([{"text": "no image"}], CONTENT),
        ([{"image": IMAGE_URL}] * 4 + [{"text": "four images"}], CONTENT),
        ([{"image": IMAGE_URL}], CONTENT),
        ([{"image": IMAGE_URL}, {"text": "one"}, {"text": "two"}], CONTENT),
        ([], CONTENT),
        ([{"image": IMAGE_URL, "text": "both"}, {"text": "t"}], f"{CONTENT}[0]"),
        ([{"image": IMAGE_URL}, {"text": "t"}, {"video": "https://example.com/v.mp4"}], f"{CONTENT}[2].video"),
        ([{"image": IMAGE_URL}, {"text": "t"}, {}], f"{CONTENT}[2]"),
        ([{"image": IMAGE_URL}, "just text"], f"{CONTENT}[1]"),
    ],
    ids=["0-images", "4-images", "0-texts", "2-texts", "empty", "image-and-text-keys", "unknown-key", "empty-item",
         "string-item"],
)
def test_powertokens_content_rules(client, content, param):
    assert_rejected(post(client, PT, pt_with_content(content)), PT, param)


@pytest.mark.parametrize("count", [0, 2])
def test_powertokens_exactly_one_message(client, count):
    body = base_body(PT)
    body["input"]["messages"] = body["input"]["messages"] * count
    assert_rejected(post(client, PT, body), PT, "input.messages")


@pytest.mark.parametrize("role", ["assistant", "system", "User", "", None])
def test_powertokens_role_must_be_user(client, role):
    body = base_body(PT)
    body["input"]["messages"][0]["role"] = role
    assert_rejected(post(client, PT, body), PT, "input.messages[0].role")


@pytest.mark.parametrize(
    "image",
    ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://example.com/a.png", "data:text/plain;base64,aGk=",
     "example.com/a.png", "//example.com/a.png", "javascript:alert(1)", ""],
)
def test_powertokens_unsupported_image_reference_rejected(client, image):
    content = [{"image": image}, {"text": "t"}]
    assert_rejected(post(client, PT, pt_with_content(content)), PT, f"{CONTENT}[0].image")


@pytest.mark.parametrize(
    "image", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://example.com/a.png", "data:text/plain;base64,aGk="]
)
def test_modelverse_unsupported_image_reference_rejected(client, image):
    assert_rejected(post(client, MV, with_field(MV, "image", image)), MV, "image")


@pytest.mark.parametrize("image", [IMAGE_URL, "http://example.com/a.png", SMALL_PNG, SMALL_PNG.split(",", 1)[1]],
                         ids=["https", "http", "data-uri", "bare-base64"])
def test_modelverse_supported_image_reference_accepted(client, image):
    assert_accepted(post(client, MV, with_field(MV, "image", image)))


# ------------------------------------------------------------------ error body and headers


VIOLATION_CASES = [
    (PT, with_field(PT, "n", 7), "n"),
    (PT, with_field(PT, "size", "a*b"), "size"),
    (PT, with_field(PT, "size", "512*511"), "size"),  # decided after the schema, by the size parser
    (PT, pt_with_content([{"image": "ftp://example.com/a.png"}, {"text": "t"}]), f"{CONTENT}[0].image"),
    (MV, with_field(MV, "n", 5), "n"),
    (MV, with_field(MV, "model", "nope"), "model"),
    (MV, with_field(MV, "image", "ftp://example.com/a.png"), "image"),  # decided after the schema
]


@pytest.mark.parametrize(("provider", "body", "field"), VIOLATION_CASES,
                         ids=[f"{p}-{f}-{i}" for i, (p, _, f) in enumerate(VIOLATION_CASES)])
def test_violations_header_lists_the_first_error(client, provider, body, field):
    response = post(client, provider, body)
    assert response.status_code == 400, response.text
    violations = header_json_list(response, "x-mock-violations")
    message = response.json()["error"]["message"]
    assert violations and violations[0] == message, (violations, message)
    assert violations[0].startswith(f"{field}:")


def test_violations_header_lists_every_violation(client):
    body = with_field(PT, "n", 0)
    body["seed"] = -5
    body["response_format"] = "gif"
    response = post(client, PT, body)
    assert response.status_code == 400
    violations = header_json_list(response, "x-mock-violations")
    assert {v.split(":", 1)[0] for v in violations} >= {"n", "seed", "response_format"}, violations
    assert response.json()["error"]["message"] in violations


@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_message_says_what_was_expected(client, provider):
    field, value, limit = ("n", 7, "6") if provider == PT else ("n", 5, "4")
    error = assert_rejected(post(client, provider, with_field(provider, field, value)), provider, field)
    assert limit in error["message"], error


def test_modelverse_error_param_is_the_request_id_the_caller_chose(client):
    response = post(client, MV, with_field(MV, "n", 0), headers={"x-request-id": "req-abc.123"})
    error = assert_rejected(response, MV, "n")
    assert response.headers["x-request-id"] == "req-abc.123"
    assert error["param"] == "req-abc.123"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("raw", [b"{", b"not json", b"[1, 2]", b'"text"', b"null", b"42", b'{"n": NaN}'])
def test_body_that_is_not_a_json_object_rejected(client, provider, raw):
    response = client.post(PATHS[provider], content=raw, headers={"content-type": "application/json"})
    assert_error_envelope(response, provider, 400, DEFAULT_CODE[provider])


# -------------------------------------------------------------------------- authentication


def _without_auth():
    test_client = make_client()
    del test_client.headers["authorization"]
    return test_client


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer    ", "Token abc", "abc", "Bearertest-key"],
)
def test_missing_or_malformed_auth_is_401(provider, authorization):
    with _without_auth() as test_client:
        headers = {} if authorization is None else {"authorization": authorization}
        response = post(test_client, provider, base_body(provider), headers=headers)
        error = assert_error_envelope(response, provider, 401, AUTH_CODE[provider])
    if provider == PT:
        assert error["type"] == "authentication_error"
    else:
        assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_auth_is_checked_before_the_body(provider):
    with _without_auth() as test_client:
        response = test_client.post(PATHS[provider], content=b"not json")
        assert_error_envelope(response, provider, 401, AUTH_CODE[provider])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_any_bearer_token_accepted_by_default(provider):
    with _without_auth() as test_client:
        response = post(test_client, provider, base_body(provider), headers={"authorization": "Bearer anything-at-all"})
        assert_accepted(response)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("token", ["bad", "goodx", "Good", "goo", "test-key"])
def test_key_not_configured_is_401(provider, token):
    with make_client(api_keys=frozenset({"good"})) as test_client:
        response = post(test_client, provider, base_body(provider), headers={"authorization": f"Bearer {token}"})
        assert_error_envelope(response, provider, 401, AUTH_CODE[provider])


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("authorization", ["Bearer good", "Bearer other", "bearer good"])
def test_configured_key_accepted(provider, authorization):
    with make_client(api_keys=frozenset({"good", "other"})) as test_client:
        assert_accepted(post(test_client, provider, base_body(provider), headers={"authorization": authorization}))


# ----------------------------------------------------------------- unknown fields, strict mode


UNKNOWN_FIELDS = [
    (PT, ("respnse_format",), "respnse_format"),
    (PT, ("input", "extra"), "input.extra"),
    (PT, ("input", "messages", 0, "name"), "input.messages[0].name"),
    (MV, ("size",), "size"),
    (MV, ("guidance",), "guidance"),
]


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def strict_body(provider: str) -> dict[str, Any]:
    """A body strict mode accepts (modelverse's image is of a recommended size)."""
    body = base_body(provider)
    if provider == MV:
        body["image"] = STRICT_PNG
    return body


@pytest.mark.parametrize(("provider", "path", "field"), UNKNOWN_FIELDS, ids=[f"{p}-{f}" for p, _, f in UNKNOWN_FIELDS])
def test_unknown_field_ignored_with_a_warning(client, provider, path, field):
    body = strict_body(provider)
    _set(body, path, "surprise")
    response = post(client, provider, body)
    assert_accepted(response)
    warnings = header_json_list(response, "x-mock-warnings")
    assert any(w.startswith(f"{field}:") for w in warnings), warnings


@pytest.mark.parametrize(("provider", "path", "field"), UNKNOWN_FIELDS, ids=[f"{p}-{f}" for p, _, f in UNKNOWN_FIELDS])
def test_unknown_field_rejected_in_strict_mode(provider, path, field):
    body = strict_body(provider)
    _set(body, path, "surprise")
    with make_client(strict=True) as strict_client:
        assert_rejected(post(strict_client, provider, body), provider, field)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_strict_mode_accepts_a_clean_request(provider):
    with make_client(strict=True) as strict_client:
        response = post(strict_client, provider, strict_body(provider))
        assert_accepted(response)
        assert "x-mock-warnings" not in response.headers


def test_clean_request_has_no_warnings(client):
    response = post(client, PT, base_body(PT))
    assert_accepted(response)
    assert "x-mock-warnings" not in response.headers


def _long_text(length: int) -> dict[str, Any]:
    return pt_with_content([{"image": IMAGE_URL}, {"text": "t" * length}])


def _long_negative(length: int) -> dict[str, Any]:
    return with_field(PT, "negative_prompt", "n" * length)


LENGTH_LIMITS = [(_long_text, 800, TEXT), (_long_negative, 500, "negative_prompt")]


@pytest.mark.parametrize(("make", "limit", "field"), LENGTH_LIMITS, ids=["text", "negative_prompt"])
def test_length_at_limit_is_clean(client, make, limit, field):
    response = post(client, PT, make(limit))
    assert_accepted(response)
    assert "x-mock-warnings" not in response.headers
    with make_client(strict=True) as strict_client:
        assert_accepted(post(strict_client, PT, make(limit)))


@pytest.mark.parametrize(("make", "limit", "field"), LENGTH_LIMITS, ids=["text", "negative_prompt"])
def test_length_past_limit_accepted_with_warning(client, make, limit, field):
    response = post(client, PT, make(limit + 1))
    assert_accepted(response)
    warnings = header_json_list(response, "x-mock-warnings")
    assert any(w.startswith(f"{field}:") and str(limit) in w for w in warnings), warnings


@pytest.mark.parametrize(("make", "limit", "field"), LENGTH_LIMITS, ids=["text", "negative_prompt"])
def test_length_past_limit_rejected_in_strict_mode(make, limit, field):
    with make_client(strict=True) as strict_client:
        error = assert_rejected(post(strict_client, PT, make(limit + 1)), PT, field)
    assert str(limit) in error["message"], error


def test_modelverse_long_prompt_and_negative_prompt_accepted(client):
    body = with_field(MV, "negative_prompt", "n" * 2000)
    body["prompt"] = "p" * 2000
    assert_accepted(post(client, MV, body))

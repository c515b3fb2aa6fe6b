"""Whatever arrives, the mock answers in the provider's envelope and never with a 5xx:
malformed and non-object JSON, invalid UTF-8, deep nesting, oversized bodies (declared and
streamed), arbitrary JSON from Hypothesis; and every response carries x-request-id."""

from __future__ import annotations

import copy
import json
import socket
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from conftest import AUTH, load_fixture, make_client
from hypothesis import event, given
from hypothesis import strategies as st
from imaging import data_uri, image_bytes
from starlette.testclient import TestClient

from mockserver import Settings, create_app
from mockserver.core.settings import DEFAULT_URL_SECRET
from mockserver.http.links import Link, LinkSigner
from mockserver.images.render import RenderSpec

ROOT = Path(__file__).resolve().parent.parent
PT, MV = "/v1/images/edits", "/v1/images/generations"
PATHS = {"powertokens": PT, "modelverse": MV}
PROVIDER_OF = {PT: "powertokens", MV: "modelverse"}
MIB = 1024 * 1024
DEFAULT_LIMIT = 20 * MIB
BOTH = pytest.mark.parametrize("path", [PT, MV], ids=["powertokens", "modelverse"])
JSON_HEADERS = {**AUTH, "content-type": "application/json"}


def schema(provider: str, name: str) -> dict:
    return json.loads((ROOT / "schemas" / provider / f"{name}.json").read_text())


ERROR_SCHEMAS = {path: schema(provider, "error") for path, provider in PROVIDER_OF.items()}
RESPONSE_SCHEMAS = {path: schema(provider, "response") for path, provider in PROVIDER_OF.items()}


def assert_provider_error(response, path: str, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    body = response.json()
    jsonschema.validate(body, ERROR_SCHEMAS[path])
    if path == MV:
        assert body["error"]["param"] == response.headers["x-request-id"]
    return body["error"]


def valid_body(path: str) -> dict:
    if path == PT:
        return load_fixture("seed/powertokens-request.json")
    body = load_fixture("seed/modelverse-request.json")
    body["image"] = data_uri(image_bytes())
    return body


@pytest.fixture(scope="module")
def app_client():
    """The mock in process, answering a server failure with its 500 instead of raising."""
    with TestClient(create_app(Settings()), headers=AUTH, raise_server_exceptions=False) as client:
        yield client


# --- malformed bodies --------------------------------------------------------------------------

MALFORMED = {
    "truncated-object": b'{"model": "qwen-image-2.0-pro"',
    "missing-value": b'{"model": }',
    "single-quotes": b"{'model': 'qwen-image-2.0-pro'}",
    "trailing-comma": b'{"n": 1,}',
    "comment": b'{"n": 1 /* one */}',
    "two-objects": b'{"n": 1}{"n": 2}',
    "trailing-garbage": b'{"n": 1} x',
    "bare-word": b"model",
    "array": b"[]",
    "array-of-objects": b'[{"model": "qwen-image-2.0-pro"}]',
    "string": b'"{\\"model\\": 1}"',
    "number": b"42",
    "float": b"3.5",
    "null": b"null",
    "true": b"true",
    "nan-value": b'{"n": NaN}',
    "infinity-value": b'{"strength": Infinity}',
    "minus-infinity-value": b'{"seed": -Infinity}',
    "nan-alone": b"NaN",
    "empty": b"",
    "whitespace": b" \n\t ",
    "nul-byte": b"\x00",
    "invalid-utf8": b'{"prompt": "\xff\xfe"}',
    "invalid-utf8-alone": b"\xc3\x28",
    "latin1": '{"prompt": "café"}'.encode("latin-1"),
    "deep-arrays-open": b"[" * 100_000,
    "deep-arrays-closed": b"[" * 100_000 + b"]" * 100_000,
    "deep-objects-open": b'{"a":' * 100_000,
    "deep-inside-field": b'{"model": "qwen-image-2.0-pro", "n": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
}


@BOTH
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_or_non_object_json_is_400(app_client, path, case):
    started = time.monotonic()
    response = app_client.post(path, content=MALFORMED[case], headers=JSON_HEADERS)
    assert_provider_error(response, path, 400)
    assert time.monotonic() - started < 5


@BOTH
@pytest.mark.parametrize("depth", [10, 200, 300, 900])
def test_deep_but_parseable_nesting_is_never_a_5xx(app_client, path, depth):
    nested = "[" * depth + "]" * depth
    for field in ("n", "unknown_field", "model", "parameters"):
        body = json.dumps(valid_body(path))[:-1] + f', "{field}": {nested}}}'
        response = app_client.post(path, content=body, headers=JSON_HEADERS)
        assert response.status_code < 500, (field, response.text[:300])
        if response.status_code != 200:
            assert_provider_error(response, path, 400)


SURROGATES = {
    "lone-high-in-key": '{"\\ud800": 1}',
    "lone-low-in-model": '{"model": "\\udfff"}',
    "lone-in-prompt": None,  # filled in per provider: a valid request whose prompt has one
    "lone-in-image-url": None,
}


def _with_lone_surrogate(path: str, where: str) -> str:
    body = valid_body(path)
    if where == "lone-in-prompt":
        if path == PT:
            body["input"]["messages"][0]["content"][1]["text"] = "PLACEHOLDER"
        else:
            body["prompt"] = "PLACEHOLDER"
        return json.dumps(body).replace("PLACEHOLDER", "sunset \\ud800")
    if path == PT:
        body["input"]["messages"][0]["content"][0]["image"] = "https://example.com/PLACEHOLDER.png"
    else:
        body["image"] = "https://example.com/PLACEHOLDER.png"
    return json.dumps(body).replace("PLACEHOLDER", "\\udc00")


@BOTH
@pytest.mark.parametrize("case", sorted(SURROGATES))
def test_lone_surrogate_escapes_are_never_a_5xx(app_client, path, case):
    # ``"\ud800"`` is valid JSON syntax, but no Unicode character: it cannot be UTF-8 encoded.
    content = SURROGATES[case] or _with_lone_surrogate(path, case)
    response = app_client.post(path, content=content, headers=JSON_HEADERS)
    assert response.status_code < 500, response.text[:300]
    if response.status_code != 200:
        assert_provider_error(response, path, 400)


@BOTH
def test_escaped_surrogate_pair_is_a_character(app_client, path):
    body = json.dumps(valid_body(path)).replace("sunset", "sunset \\ud83c\\udf05").replace("sketch", "sketch \\ud83c\\udf05")
    assert "\\ud83c" in body
    response = app_client.post(path, content=body, headers=JSON_HEADERS)
    assert response.status_code == 200, response.text[:300]


# --- oversized bodies --------------------------------------------------------------------------


def body_of_exactly(path: str, size: int) -> bytes:
    """A valid request padded with whitespace to exactly ``size`` bytes."""
    text = json.dumps(valid_body(path))
    assert len(text) <= size
    return (text[:-1] + " " * (size - len(text)) + "}").encode()


@BOTH
def test_body_at_the_limit_is_read_and_one_byte_over_is_413(path):
    limit = 4096
    with make_client(max_body_bytes=limit) as small_client:
        at_limit = small_client.post(path, content=body_of_exactly(path, limit), headers=JSON_HEADERS)
        assert at_limit.status_code == 200, at_limit.text
        over = small_client.post(path, content=body_of_exactly(path, limit + 1), headers=JSON_HEADERS)
    assert_provider_error(over, path, 413)


@BOTH
def test_default_limit_is_20_mib(client, path):
    at_limit = client.post(path, content=body_of_exactly(path, DEFAULT_LIMIT), headers=JSON_HEADERS)
    assert at_limit.status_code == 200, at_limit.text[:300]
    over = client.post(path, content=body_of_exactly(path, DEFAULT_LIMIT + 1), headers=JSON_HEADERS)
    assert_provider_error(over, path, 413)


@BOTH
def test_chunked_body_over_the_limit_is_413(live_server, path):
    chunk = b" " * MIB
    sent = []

    def body():
        yield b"{"
        for _ in range(20):
            sent.append(len(chunk))
            yield chunk
        yield b"}" + b" " * 64

    request = httpx.Request("POST", live_server.base_url + path, content=body(), headers=JSON_HEADERS)
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    with httpx.Client(timeout=30) as http:
        response = http.send(request)
    assert_provider_error(response, path, 413)


def _raw_exchange(live_server, head: bytes, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send ``head`` and ``body`` and read the answer, without ever finishing the body."""
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
            piece = sock.recv(65536)  # a server waiting for the rest of the body times out here
            if not piece:
                break
            answer += piece
        return answer


def _content_length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def _head(path: str, port: int, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


@BOTH
def test_declared_length_over_the_limit_is_413_before_the_body_is_sent(live_server, path):
    head = _head(path, live_server.port, f"Content-Length: {DEFAULT_LIMIT + 1}\r\n")
    status, headers, body = _parse(_raw_exchange(live_server, head))
    assert status == 413
    assert headers["x-request-id"]
    jsonschema.validate(json.loads(body), ERROR_SCHEMAS[path])


@BOTH
@pytest.mark.parametrize("declared", [10**12, 10**19])
def test_huge_declared_length_is_413(live_server, path, declared):
    head = _head(path, live_server.port, f"Content-Length: {declared}\r\n")
    status, _, body = _parse(_raw_exchange(live_server, head))
    assert status == 413
    jsonschema.validate(json.loads(body), ERROR_SCHEMAS[path])


@BOTH
def test_streamed_body_is_cut_off_at_the_limit_without_waiting_for_its_end(live_server, path):
    # One chunk one byte over the limit, and no terminating chunk: a server that read the whole
    # body before deciding would wait forever (here: until the socket times out).
    size = DEFAULT_LIMIT + 1
    head = _head(path, live_server.port, "Transfer-Encoding: chunked\r\n")
    chunk = f"{size:x}\r\n".encode() + b" " * size + b"\r\n"
    status, headers, body = _parse(_raw_exchange(live_server, head, chunk))
    assert status == 413
    assert headers["x-request-id"]
    jsonschema.validate(json.loads(body), ERROR_SCHEMAS[path])


# --- arbitrary JSON (Hypothesis) --------------------------------------------------------------

SMALL_PNG = data_uri(image_bytes(16, 12))
SMALL_PNG_BARE = SMALL_PNG.partition(",")[2]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

interesting = st.sampled_from(
    [
        "qwen-image-2.0-pro", "Qwen/Qwen-Image-Edit", "url", "b64_json", "user",
        "512*512", "1024x1024", "600x437", "512x512x1", "0*0", "99999999999*1", "-1*5", "512 * 512",
        SMALL_PNG, SMALL_PNG_BARE, "https://example.com/a.png", "http://192.0.2.1/a.png", "ftp://example.com/a.png",
        "data:image/png;base64,", "data:image/png;base64,!!!!", data_uri(b"GIF89a"), "", " ",
        -1, 0, 1, 2, 4, 5, 6, 7, 20, 50, 51, 2**31 - 1, 2**31, 2**63, -(2**63) - 1, 10**30,
        0.0, -0.0, 0.5, 0.8, 1.0, 1.5, 2.5, 10.0, 10.5, 1e308, -1e308, 5e-324,
        True, False, None, [], {},
    ]
)
field_values = interesting | json_values

PT_FIELDS = ["model", "input", "response_format", "n", "size", "watermark", "prompt_extend",
             "negative_prompt", "seed", "parameters"]
MV_FIELDS = ["prompt", "model", "image", "n", "strength", "seed", "steps", "guidance_scale",
             "negative_prompt", "response_format"]

content_items = st.one_of(
    st.fixed_dictionaries({"image": field_values}),
    st.fixed_dictionaries({"text": field_values}),
    st.fixed_dictionaries({"image": field_values, "text": field_values}),
    json_values,
)
messages = st.lists(
    st.fixed_dictionaries({"role": st.just("user") | field_values, "content": st.lists(content_items, max_size=5) | field_values})
    | json_values,
    max_size=3,
)
pt_input = st.fixed_dictionaries({"messages": messages}) | field_values


def partial_requests(fields: list[str], overrides: dict) -> st.SearchStrategy:
    """Objects that look more or less like requests: known field names with random values."""
    keys = st.sampled_from(fields) | st.text(max_size=8)
    values = st.dictionaries(keys, field_values, max_size=len(fields) + 2)
    specific = st.fixed_dictionaries({}, optional=overrides)
    return st.builds(lambda a, b: {**a, **b}, values, specific)


def mutated_valid(path: str, fields: list[str], overrides: dict) -> st.SearchStrategy:
    """A valid request with some fields replaced (by plausible or arbitrary values) or removed."""

    def mutate(replacements: dict, removals: list[str]) -> dict:
        body = copy.deepcopy(valid_body(path))
        body.update(replacements)
        for key in removals:
            body.pop(key, None)
        return body

    plausible = PLAUSIBLE[path]
    per_field = {field: plausible.get(field, field_values) | field_values for field in fields}
    replacements = st.builds(
        lambda a, b: {**a, **b},
        st.fixed_dictionaries({}, optional={field: plausible[field] for field in plausible}),
        st.fixed_dictionaries({}, optional=overrides)
        | st.dictionaries(st.sampled_from(fields), st.one_of(*per_field.values()), max_size=2),
    )
    return st.builds(mutate, replacements, st.lists(st.sampled_from(fields), max_size=2))


PLAUSIBLE = {
    PT: {
        "n": st.integers(1, 6),
        "size": st.sampled_from(["512*512", "512x512", "600x437", "1024*512", "262144*1", "1*262144"]),
        "seed": st.integers(0, 2**31 - 1),
        "response_format": st.sampled_from(["url", "b64_json"]),
        "watermark": st.booleans(),
        "prompt_extend": st.booleans(),
        "negative_prompt": st.text(max_size=30),
    },
    MV: {
        "n": st.integers(1, 4),
        "strength": st.floats(0, 1),
        "seed": st.integers(-1, 2**31 - 1),
        "steps": st.integers(1, 50),
        "guidance_scale": st.floats(1, 10),
        "prompt": st.text(min_size=1, max_size=30),
        "negative_prompt": st.text(max_size=30),
        "response_format": st.sampled_from(["url", "b64_json"]),
    },
}


PT_SPECIFIC = {"input": pt_input}
MV_SPECIFIC = {"image": st.sampled_from([SMALL_PNG, SMALL_PNG_BARE, "https://example.com/a.png"]) | field_values}

ARBITRARY = {
    PT: json_values | partial_requests(PT_FIELDS, PT_SPECIFIC) | mutated_valid(PT, PT_FIELDS, PT_SPECIFIC),
    MV: json_values | partial_requests(MV_FIELDS, MV_SPECIFIC) | mutated_valid(MV, MV_FIELDS, MV_SPECIFIC),
}


def check_any_answer(client: TestClient, path: str, value) -> None:
    response = client.post(path, content=json.dumps(value), headers=JSON_HEADERS)
    assert response.status_code < 500, (value, response.text[:500])
    assert response.headers["x-request-id"]
    event(f"status {response.status_code}")
    if response.status_code == 200:
        jsonschema.validate(response.json(), RESPONSE_SCHEMAS[path])
    else:
        assert 400 <= response.status_code < 500
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        jsonschema.validate(body, ERROR_SCHEMAS[path])
        if path == MV:
            assert body["error"]["param"] == response.headers["x-request-id"]
        if not isinstance(value, dict):
            assert response.status_code == 400


@given(value=ARBITRARY[PT])
def test_arbitrary_json_at_powertokens(app_client, value):
    check_any_answer(app_client, PT, value)


@given(value=ARBITRARY[MV])
def test_arbitrary_json_at_modelverse(app_client, value):
    check_any_answer(app_client, MV, value)


@pytest.fixture(scope="module")
def strict_client():
    with TestClient(create_app(Settings(strict=True)), headers=AUTH, raise_server_exceptions=False) as client:
        yield client


@given(path=st.sampled_from([PT, MV]), data=st.data())
def test_arbitrary_json_in_strict_mode(strict_client, path, data):
    check_any_answer(strict_client, path, data.draw(ARBITRARY[path]))


# --- x-request-id on every kind of response ---------------------------------------------------


def _file_paths(live_server) -> dict[str, str]:
    signer = LinkSigner(DEFAULT_URL_SECRET)
    spec = RenderSpec(width=32, height=32, seed=1, index=0, fingerprint="0" * 16, caption="x", model="m")
    now = int(time.time())
    return {
        "valid": f"/files/{signer.token(Link(spec, 'powertokens', now + 3600))}.png",
        "expired": f"/files/{signer.token(Link(spec, 'modelverse', now - 3600))}.png",
        "garbage": "/files/not-a-token.png",
    }


def _streamed_body(size: int):
    yield b"{"
    for _ in range((size - 2) // MIB):
        yield b" " * MIB
    yield b" " * ((size - 2) % MIB) + b"}"


def test_every_response_carries_x_request_id(live_server):
    base = live_server.base_url
    files = _file_paths(live_server)
    with httpx.Client(base_url=base, timeout=30) as http:
        responses = {
            "200 powertokens": http.post(PT, json=valid_body(PT), headers=AUTH),
            "200 modelverse": http.post(MV, json=valid_body(MV), headers=AUTH),
            "400 powertokens": http.post(PT, json={}, headers=AUTH),
            "400 modelverse": http.post(MV, content=b"[", headers=AUTH),
            "401 no header": http.post(PT, json=valid_body(PT)),
            "401 wrong scheme": http.post(MV, json=valid_body(MV), headers={"Authorization": "Basic dXNlcjpwdw=="}),
            "401 empty token": http.post(MV, json=valid_body(MV), headers={"Authorization": "Bearer"}),
            "404 unknown path": http.post("/v1/images/variations", json={}, headers=AUTH),
            "307 root": http.get("/"),  # to the dashboard
            "405 get powertokens": http.get(PT, headers=AUTH),
            "405 put modelverse": http.put(MV, json=valid_body(MV), headers=AUTH),
            "405 delete powertokens": http.delete(PT, headers=AUTH),
            "405 post files": http.post(files["valid"]),
            # Streamed, so the server has read all that was sent when it answers.
            "413": http.post(MV, content=_streamed_body(DEFAULT_LIMIT + 2), headers=AUTH),
            "200 file": http.get(files["valid"]),
            "200 file head": http.head(files["valid"]),
            "403 file": http.get(files["expired"]),
            "404 file": http.get(files["garbage"]),
            "200 healthz": http.get("/healthz"),
            "200 openapi": http.get("/openapi.json"),
        }
    ids = []
    for name, response in responses.items():
        expected = int(name.split()[0])
        assert response.status_code == expected, (name, response.status_code, response.text[:300])
        request_id = response.headers.get("x-request-id")
        assert request_id, name
        ids.append(request_id)
        if response.status_code >= 400 and response.request.method != "HEAD":
            assert response.headers["content-type"].startswith("application/json"), name
            assert "error" in response.json(), name
    assert len(set(ids)) == len(ids), "request ids repeat"

    for name in ("400 powertokens", "401 no header", "405 get powertokens", "405 delete powertokens"):
        jsonschema.validate(responses[name].json(), ERROR_SCHEMAS[PT])
    for name in ("400 modelverse", "401 wrong scheme", "401 empty token", "405 put modelverse", "413", "403 file"):
        body = responses[name].json()
        jsonschema.validate(body, ERROR_SCHEMAS[MV])
        assert body["error"]["param"] == responses[name].headers["x-request-id"], name
    assert responses["401 no header"].json()["error"]["code"] == "InvalidApiKey"
    assert responses["401 wrong scheme"].json()["error"]["code"] == "auth_error"
    for name in ("405 get powertokens", "405 put modelverse", "405 delete powertokens"):
        assert "POST" in responses[name].headers.get("allow", ""), name


def test_caller_chosen_request_id_is_echoed_everywhere(app_client):
    for path in (PT, MV):
        ok = app_client.post(path, json=valid_body(path), headers={"x-request-id": "trace-123"})
        assert ok.headers["x-request-id"] == "trace-123"
        bad = app_client.post(path, json={}, headers={"x-request-id": "trace-456"})
        assert bad.headers["x-request-id"] == "trace-456"
        if path == MV:
            assert bad.json()["error"]["param"] == "trace-456"
        else:
            assert ok.json()["metadata"]["request_id"] == "trace-123"
    # Nothing unsafe is reflected into a header or a body.
    for unsafe in ("a b", "x" * 129, "<script>", ""):
        response = app_client.post(MV, json={}, headers={"x-request-id": unsafe})
        assert response.headers["x-request-id"] != unsafe
        assert response.headers["x-request-id"]


@pytest.mark.parametrize(("path", "provider"), [
    ("/v1/images/edits/", "powertokens"), ("/v1/images/generations/", "modelverse"), ("/__mock/requests/", None),
    ("/healthz/", None),
])
def test_a_trailing_slash_is_a_json_404_not_a_redirect(path, provider):
    """In the envelope of the provider whose endpoint it resembles; the mock's own otherwise."""
    with TestClient(create_app(Settings()), headers=AUTH, follow_redirects=False) as client:
        response = client.post(path, json={}) if path.startswith("/v1") else client.get(path)
    assert response.status_code == 404
    expected = "not_found" if provider is None else ERROR_SCHEMAS[PATHS[provider]]["x-errors"]["not_found"]["code"]
    assert response.json()["error"]["code"] == expected

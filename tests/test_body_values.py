"""A body is refused before it is parsed when it may hold more JSON values than any request
of any provider comes near (``http/body.MAX_JSON_VALUES``): parsed and validated, a 20 MiB
body of ``0,`` cost the mock ~800 MB."""

from __future__ import annotations

import json

import orjson
from conftest import make_client
from hypothesis import given
from hypothesis import strategies as st
from schema_data import error_field, schema

from mockserver.http.body import MAX_JSON_VALUES, check_value_count
from mockserver.providers import PROVIDERS

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=60,
)


def value_count(value) -> int:
    if isinstance(value, dict):
        return 1 + sum(value_count(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(value_count(item) for item in value)
    return 1


def counted(raw: bytes) -> int:
    return raw.count(b",") + raw.count(b"[") + raw.count(b"{")


@given(JSON_VALUES, st.booleans())
def test_the_count_never_falls_short_of_the_values_a_body_holds(value, pretty):
    # So a body the check lets through holds at most MAX_JSON_VALUES + 1 values.
    raw = json.dumps(value, indent=2 if pretty else None).encode()
    assert value_count(value) <= counted(raw) + 1


def test_a_body_of_millions_of_values_is_refused_in_each_providers_envelope_unparsed():
    raw = b'{"x":[' + b"0," * 3_000_000 + b"0]}"
    with make_client() as client:
        for provider in PROVIDERS:
            answer = client.post(provider.path, content=raw, headers={"content-type": "application/json"})
            catalogue = schema(provider.name, "error")["x-errors"]["body_too_large"]
            assert answer.status_code == catalogue["status"] == 413, (provider.name, answer.text[:200])
            assert error_field(provider.name, answer.json(), "code") == catalogue["code"]
            assert f"more than {MAX_JSON_VALUES:,} JSON values" in error_field(provider.name, answer.json(), "message")


def test_a_body_just_under_the_count_is_read_as_usual(modelverse_request):
    body = {**modelverse_request, "extra": [0] * (MAX_JSON_VALUES - 100)}
    raw = orjson.dumps(body)
    check_value_count(raw)  # does not raise
    with make_client() as client:
        answer = client.post("/v1/images/generations", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text[:300]

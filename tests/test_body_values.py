"""A body is refused before it is parsed when it may hold more JSON values than any request
of any provider comes near (``http/body.MAX_JSON_VALUES``): parsed and validated, a 20 MiB
body of ``0,`` cost the mock ~800 MB."""

from __future__ import annotations

import json

import orjson
from conftest import ROOT, make_client
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


# --- one JSON loader (core/formats.load_json) for request bodies, cassettes and their files -----

EXACT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**200), 2**200) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@given(EXACT_VALUES)
def test_the_loader_reads_what_json_wrote_exactly_integers_of_any_size_included(value):
    from mockserver.core.formats import load_json

    assert load_json(json.dumps(value).encode()) == value
    assert load_json(json.dumps(value, ensure_ascii=False).encode()) == value


@given(st.binary(max_size=200))
def test_the_loader_takes_what_the_standard_parser_takes_and_refuses_the_rest_with_a_reason(raw):
    from mockserver.core.formats import NotJson, load_json

    try:
        expected = json.loads(raw.decode("utf-8"))
        json.dumps(expected, ensure_ascii=False).encode()
        if "NaN" in raw.decode() or "Infinity" in raw.decode():
            expected = NotJson
    except (ValueError, UnicodeError, RecursionError):
        expected = NotJson
    try:
        got = load_json(raw)
    except NotJson as error:
        assert expected is NotJson and str(error)
    else:
        assert expected is not NotJson and got == expected


def test_an_integer_past_64_bits_is_quoted_as_sent_not_as_a_float():
    seed = 2**70 + 1  # orjson alone reads it as 1.1805916207174113e+21
    with make_client() as client:
        body = {**json.loads((ROOT / "fixtures/seed/powertokens-request.json").read_text()), "seed": seed}
        answer = client.post("/v1/images/edits", content=json.dumps(body), headers={"content-type": "application/json"})
    assert f"seed: {seed} is greater than the maximum" in answer.json()["error"]["message"]

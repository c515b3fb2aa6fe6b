"""The cassette format: the canonical form (fuzzed with Hypothesis: it gives back exactly what
it was made from, and two requests share a key only when they are the same request), and the
loader, which refuses at start-up, with the file and the field, every cassette a person or an
attacker could have got wrong (fuzzed too: it loads or says why, never anything else)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cassette_support import (
    AUTH_FREE,
    calls,
    exchanges,
    in_process_proxy,
    mock_app,
    powertokens_body,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mockserver import Settings, create_app
from mockserver.cassettes.canonical import (
    Canonicaliser,
    body_bytes,
    check_form,
    request_key,
)
from mockserver.cassettes.cassette import CassetteError, load
from mockserver.cassettes.replay import Replay
from mockserver.cassettes.shapes import Shape
from mockserver.providers import PROVIDERS

SETTINGS = Settings()
PROVIDER_OBJECTS = {cls.name: cls(SETTINGS) for cls in PROVIDERS}
SHAPES = {name: Shape.of(provider) for name, provider in PROVIDER_OBJECTS.items()}
PATHS = {name: p.path for name, p in PROVIDER_OBJECTS.items()}
VARY = {name: tuple(p.vary) for name, p in PROVIDER_OBJECTS.items()}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def load_dir(directory: Path, max_bytes: int = 1 << 30, max_exchange_bytes: int = 1 << 28):
    return load(directory, paths=PATHS, vary=VARY, max_bytes=max_bytes, max_exchange_bytes=max_exchange_bytes)


# --------------------------------------------------------------------------- the canonical form

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False,
                                                                                        allow_infinity=False)
IMAGES = st.binary(min_size=1, max_size=64).map(
    lambda data: "data:image/png;base64," + base64.b64encode(data).decode())
BARE = st.binary(min_size=16, max_size=64).map(lambda data: base64.b64encode(data).decode())
TEXT = st.text(max_size=30) | st.sampled_from(["$image", "$text", "$$x", "data:", "data:image/png;base64,", "=="])
KEYS = st.text(max_size=8) | st.sampled_from(["$image", "$text", "$bytes", "$$image", "prefix", "link", "image"])
JSON = st.recursive(JSON_SCALARS | TEXT | IMAGES | BARE,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=25)


def roundtrip(shape: Shape, value: Any) -> tuple[Any, bytes]:
    canonical = Canonicaliser(shape)
    raw = json.dumps(value).encode()
    form = canonical.request(raw)
    check_form(form, "body")
    return form, body_bytes(form, canonical.blobs.__getitem__, lambda marker: marker["link"])


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(SHAPES)), JSON)
def test_the_canonical_form_gives_back_exactly_the_body(provider, value):
    form, rebuilt = roundtrip(SHAPES[provider], value)
    assert json.loads(rebuilt) == value
    # the form is itself JSON a cassette can hold, and making it again changes nothing
    assert json.loads(json.dumps(form)) == form
    assert roundtrip(SHAPES[provider], value)[0] == form


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(SHAPES)), JSON, JSON)
def test_two_requests_share_a_key_only_when_they_are_the_same(provider, first, second):
    shape = SHAPES[provider]

    def key(value: Any) -> str:
        return request_key("POST", shape.path, "", "bearer", {}, Canonicaliser(shape).request(json.dumps(value).encode()))

    assert (key(first) == key(second)) == (json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True))


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_body(raw):
    canonical = Canonicaliser(SHAPES["modelverse"])
    form = canonical.request(raw)
    check_form(form, "body")
    assert body_bytes(form, canonical.blobs.__getitem__, lambda m: m["link"]) == raw or json.loads(raw) is not None


def test_image_data_is_stored_by_hash_and_prompts_that_match_do_not_collide():
    shape = SHAPES["powertokens"]
    canonical = Canonicaliser(shape)
    one = canonical.request(json.dumps(powertokens_body(seed=1)).encode())
    two = canonical.request(json.dumps(powertokens_body(seed=2)).encode())
    assert len(canonical.blobs) == 1
    assert request_key("POST", shape.path, "", "bearer", {}, one) != request_key("POST", shape.path, "", "bearer", {},
                                                                                  two)
    # bare base64 counts as an image only where the schema has one (modelverse's image)
    bare = base64.b64encode(PNG).decode()
    modelverse = Canonicaliser(SHAPES["modelverse"]).request(json.dumps({"image": bare, "prompt": bare}).encode())
    assert modelverse["image"]["$image"] and modelverse["prompt"] == bare
    # a header the provider varies on counts; credentials count by their form only
    ds = SHAPES["dashscope"]
    assert request_key("POST", ds.path, "", "bearer", {"x-dashscope-async": "enable"}, {}) != request_key(
        "POST", ds.path, "", "bearer", {}, {})
    assert request_key("POST", ds.path, "", "bearer", {}, {}) != request_key("POST", ds.path, "", "none", {}, {})


# --------------------------------------------------------------------------- hostile cassettes


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small real cassette: powertokens with a link answer and a b64 one, a 429."""
    cassette = tmp_path_factory.mktemp("good") / "cassette"
    proxy = in_process_proxy(mock_app(), cassette)
    answers = calls(proxy,
                    ("POST", "/v1/images/edits", {"json": powertokens_body(), "headers": AUTH_FREE}),
                    ("POST", "/v1/images/edits", {"json": powertokens_body(response_format="b64_json"),
                                                  "headers": AUTH_FREE}),
                    ("POST", "/v1/images/edits", {"json": powertokens_body(seed=3),
                                                  "headers": {**AUTH_FREE, "Prefer": "code=429"}}))
    assert [a.status_code for a in answers] == [200, 200, 429]
    return cassette


def copy_of(good: Path, tmp_path: Path) -> Path:
    target = tmp_path / "cassette"
    shutil.copytree(good, target)
    return target


def first_exchange(cassette: Path) -> Path:
    return sorted((cassette / "exchanges").glob("*.json"))[0]


def edit_first(cassette: Path, change) -> None:
    path = first_exchange(cassette)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def image_of(cassette: Path) -> dict[str, Any]:
    return json.loads(first_exchange(cassette).read_text())["request"]["body"]["input"]["messages"][0]["content"][0][
        "image"]


def test_the_good_cassette_loads(good):
    cassette = load_dir(good)
    assert [e.status for e in cassette.exchanges] == [200, 200, 429]
    assert cassette.upstream == "http://upstream.test"


HOSTILE = {
    "a traversal as an image name": (lambda d: d["request"]["body"]["input"]["messages"][0]["content"][0].update(
        image={"$image": "../../../etc/passwd", "prefix": ""}), "expected the sha256 of an image file"),
    "an image not in images/": (lambda d: d["request"]["body"]["input"]["messages"][0]["content"][0].update(
        image={"$image": "0" * 64, "prefix": ""}), "which is not in"),
    "an unknown marker": (lambda d: d["response"]["body"].update(x={"$eval": "1"}), "unknown marker '$eval'"),
    "a prefix that is not a data URI": (lambda d: d["request"]["body"]["input"]["messages"][0]["content"][0][
        "image"].update(prefix="javascript:"), "expected \"\" or a data URI's start"),
    "an unknown field": (lambda d: d.update(respones={}), "unknown field 'respones'"),
    "another provider's path": (lambda d: d["request"].update(path="/v1/images/generations"),
                                "powertokens's endpoint is /v1/images/edits"),
    "an unknown provider": (lambda d: d.update(provider="openai"), "'openai' is not a provider"),
    "a header with a line break": (lambda d: d["response"]["headers"].update({"x-evil": "a\r\nset-cookie: x"}),
                                   "expected a header value"),
    "a header name with a space": (lambda d: d["response"]["headers"].update({"x evil": "1"}),
                                   "is not a lower-case header name"),
    "a status out of range": (lambda d: d["response"].update(status=99), "expected an HTTP status"),
    "a request header no provider varies on": (lambda d: d["request"].update(headers={"authorization": "Bearer x"}),
                                               "'authorization' does not change powertokens's answers"),
    "credentials spelled out": (lambda d: d["request"].update(credentials="Bearer sk-123"),
                                "expected one of bearer, malformed, none"),
    "a $text inside a body": (lambda d: d["response"]["body"].update(x={"$text": "hi"}),
                              "$text and $bytes stand for a whole body"),
    "a method that is not one": (lambda d: d["request"].update(method="BREW"), "expected one of"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_exchange_is_refused_at_start_up_naming_the_file_and_field(good, tmp_path, case):
    change, message = HOSTILE[case]
    cassette = copy_of(good, tmp_path)
    edit_first(cassette, change)
    with pytest.raises(CassetteError) as raised:
        load_dir(cassette)
    assert message in str(raised.value) and "0001-powertokens-200.json" in str(raised.value)
    # and the mock does not start with it: the same message, from create_app
    with pytest.raises(ValueError, match="0001-powertokens-200.json"):
        create_app(Settings(replay=str(cassette)))


def test_hostile_files(good, tmp_path):
    cassette = copy_of(good, tmp_path)
    digest = image_of(cassette)["$image"]
    blob = cassette / "images" / f"{digest}.png"
    # bytes that do not have the hash of their name
    original = blob.read_bytes()
    blob.write_bytes(original + b"x")
    with pytest.raises(CassetteError, match="do not have the sha256 its name says"):
        load_dir(cassette)
    # a link in place of a file (to a secret file elsewhere): refused, never read
    secret = tmp_path / "secret.txt"
    secret.write_text("not for a client")
    blob.unlink()
    os.symlink(secret, blob)
    with pytest.raises(CassetteError, match="not a regular file"):
        load_dir(cassette)
    blob.unlink()
    blob.write_bytes(original)
    # JSON that is not, NaN, too deep, too large
    path = first_exchange(cassette)
    text = path.read_text()
    for broken, message in (("{", "not valid JSON"), ('{"provider": NaN}', "NaN is not a JSON value"),
                            ("[" * 100_000 + "]" * 100_000, "nested too deeply"), ("\udcff", "not UTF-8")):
        path.write_bytes(broken.encode("utf-8", "surrogateescape"))
        with pytest.raises(CassetteError, match=message):
            load_dir(cassette)
    path.write_text(text)
    with pytest.raises(CassetteError, match="over the limit of 1,000 "):
        load_dir(cassette, max_exchange_bytes=1000)
    with pytest.raises(CassetteError, match="--cassette-max-bytes"):
        load_dir(cassette, max_bytes=10_000)
    # names: an exchange file of another name, a manifest of another format or version
    (cassette / "exchanges" / "notes.txt").write_text("hi")
    with pytest.raises(CassetteError, match="not an exchange file"):
        load_dir(cassette)
    (cassette / "exchanges" / "notes.txt").unlink()
    (cassette / "exchanges" / ".notes.swp").write_text("editors leave these")
    load_dir(cassette)
    manifest = json.loads((cassette / "cassette.json").read_text())
    (cassette / "cassette.json").write_text(json.dumps({**manifest, "version": 2}))
    with pytest.raises(CassetteError, match="reads version 1"):
        load_dir(cassette)
    (cassette / "cassette.json").unlink()
    with pytest.raises(CassetteError, match="cassette.json"):
        load_dir(cassette)
    with pytest.raises(CassetteError, match="no such cassette directory"):
        load_dir(tmp_path / "missing")


def test_serve_refuses_a_bad_cassette_before_it_listens(good, tmp_path):
    cassette = copy_of(good, tmp_path)
    edit_first(cassette, HOSTILE["an unknown marker"][0])
    done = subprocess.run([sys.executable, "-m", "mockserver", "serve", "--port", "1", "--replay", str(cassette)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown marker '$eval'" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "mockserver", "serve", "--port", "1", "--replay-strict"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "replay_strict needs replay" in done.stderr


MUTATIONS = st.sampled_from(["replace", "delete", "insert"])
VALUES = st.recursive(JSON_SCALARS | st.text(max_size=70) | st.sampled_from(["0" * 64, "data:image/png;base64,"]),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=8)


def places(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += places(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += places(item, path + (index,))
    return out


def mutated(document: Any, path: tuple, how: str, value: Any) -> Any:
    if not path:
        return value
    node = document
    for step in path[:-1]:
        node = node[step]
    last = path[-1]
    if how == "delete":
        del node[last]
    elif how == "insert" and isinstance(node, list):
        node.insert(last, value)
    elif how == "insert" and isinstance(node, dict):
        node[f"{last}x"] = value
    else:
        node[last] = value
    return document


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_fuzzed_exchange_loads_or_says_why_and_replays_without_a_500(good, tmp_path_factory, data):
    cassette = copy_of(good, tmp_path_factory.mktemp("fuzz"))
    path = sorted((cassette / "exchanges").glob("*.json"))[data.draw(st.integers(0, 2), label="file")]
    document = json.loads(path.read_text())
    where = data.draw(st.sampled_from(places(document)), label="where")
    document = mutated(document, where, data.draw(MUTATIONS, label="how"), data.draw(VALUES, label="value"))
    path.write_text(json.dumps(document))
    try:
        loaded = load_dir(cassette)
    except CassetteError as error:
        assert str(cassette) in str(error)
        return
    # it loaded: every recorded request replays, each answered as recorded or as a miss
    app = create_app(Settings(replay=str(cassette), journal_cap=0))
    replay: Replay = app.state.replay
    with TestClient(app, raise_server_exceptions=False) as client:
        for exchange in loaded.exchanges:
            body = body_bytes(exchange.body, loaded.blob, lambda marker: marker["link"])
            headers = {"Authorization": "Bearer k"} if exchange.credentials == "bearer" else {}
            answer = client.post(exchange.path + (f"?{exchange.query}" if exchange.query else ""), content=body,
                                 headers={**headers, **exchange.headers})
            assert answer.status_code != 500 or exchange.status == 500, answer.text
            assert answer.headers["x-mock-replay"] in ("hit", "miss")
    assert replay.hits + replay.misses == len(loaded.exchanges)


def test_recorded_bytes_are_what_the_upstream_sent(good):
    """Exchange files are deterministic: the same answer, the same file (times aside)."""
    [first, second, third] = exchanges(good)
    assert first["response"]["body"]["data"][0]["url"]["link"].startswith("http://upstream.test/files/")
    assert set(second["response"]["body"]["data"][0]["b64_json"]) == {"$image", "prefix"}
    assert third["response"]["status"] == 429 and "retry-after" in third["response"]["headers"]


# --------------------------------------------------------------------------- near misses, bounded


def test_a_near_miss_lists_a_bounded_number_of_values_however_many_a_body_holds():
    from mockserver.cassettes.near_miss import MAX_LEAVES, flatten

    flat = flatten({"x": list(range(90_000)), "y": {str(i): i for i in range(1000)}})
    assert len(flat) == MAX_LEAVES + 1 and list(flat)[-1] == "…"
    assert list(flat)[:2] == ["body.x[0]", "body.x[1]"]  # document order


def test_long_texts_that_differ_late_are_different_values():
    from mockserver.cassettes.near_miss import differences, fingerprint, flatten

    first, second = {"prompt": "a" * 500 + "b"}, {"prompt": "a" * 500 + "c"}
    assert differences(flatten(first), flatten(second)) == [
        ("body.prompt", flatten(second)["body.prompt"], flatten(first)["body.prompt"])]
    assert fingerprint(first) != fingerprint(second)
    assert all(len(text) < 120 for text in flatten(first).values())


def test_a_strict_miss_with_a_large_body_is_answered_with_a_bounded_message(good):
    from mockserver.http.body import MAX_JSON_VALUES
    from mockserver.http.responses import HEADER_LIMIT

    body = {**powertokens_body(seed=99), "extra": list(range(MAX_JSON_VALUES - 1000))}
    app = create_app(Settings(replay=str(good), replay_strict=True, journal_cap=0))
    with TestClient(app) as client:
        answer = client.post("/v1/images/edits", json=body, headers=AUTH_FREE)
    assert answer.status_code == 404 and answer.headers["x-mock-replay"] == "miss"
    message = answer.json()["error"]["message"]
    assert "body.seed (recorded" in message and "more." in message and len(message) < 2000
    assert len(answer.headers["x-mock-replay-differences"]) <= HEADER_LIMIT
    # the nearest is the recorded request that differs only in its seed and the extra field
    assert answer.headers["x-mock-replay-nearest"] == "0001-powertokens-200.json"

"""Hostile input, fuzzed: whatever a request puts in a link token, an admin query parameter
or any header the mock reads, the answer is a 4xx (or a 200) with a JSON body, in the
provider's envelope on the edit endpoints, and never a 5xx. Links signed with the public
default key but carrying payloads the mock never issues are 404s. And the time bounds:
a slow image host, a long ``Prefer: latency`` and a dribbled body cannot hold the mock.

The request builders are in ``hostile.py``; ``test_memory_bounds.py`` checks memory.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import anyio.from_thread
import httpx
import jsonschema
import pytest
from conftest import AUTH, load_fixture
from hostile import (
    BODY_LIMIT,
    MV,
    PT,
    DripServer,
    ServerProcess,
    fetch_urls_that_once_failed,
    file_paths_that_once_failed,
    forged_path,
    forged_payload,
    forged_payloads,
    modelverse_body,
    nested_body,
    post_head,
    spec_list,
    valid_token,
    wait_until_reading_stops,
)
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from imaging import data_uri, image_bytes
from PIL import Image
from schema_data import error_field, has_error_field, schema

from mockserver import Settings, create_app
from mockserver.providers import PROVIDERS as REGISTERED

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_OF = {p.path: p.name for p in REGISTERED}
ERROR_SCHEMAS = {path: json.loads((ROOT / "schemas" / p / "error.json").read_text()) for path, p in PROVIDER_OF.items()}
# Every provider's edit endpoint.
BOTH = pytest.mark.parametrize("path", list(PROVIDER_OF), ids=list(PROVIDER_OF.values()))
# The largest image either provider answers with (both: 2048*2048 pixels); a link to a
# larger one was not issued by the mock.
MAX_IMAGE_PIXELS = 2048 * 2048
SESSION = "hostile-probe"


def valid_body(path: str) -> dict:
    if path == MV:
        return modelverse_body(data_uri(image_bytes()))
    return load_fixture(f"seed/{PROVIDER_OF[path]}-request.json")


class InProcess:
    """The mock in process, through httpx's ``ASGITransport``: header values reach the app as
    the very bytes given (Starlette's ``TestClient`` re-encodes bytes over 0x7f as UTF-8), and
    a server failure is its 500 answer, not an exception here. Async under the hood, in one
    event loop kept in a thread (the app's thread limiter belongs to the loop it first ran in)."""

    def __init__(self, **overrides) -> None:
        self._portal_manager = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_manager.__enter__()
        transport = httpx.ASGITransport(app=create_app(Settings(**overrides)), raise_app_exceptions=False)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=AUTH)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        return self._portal.call(functools.partial(self._client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._portal_manager.__exit__(None, None, None)


@contextlib.contextmanager
def in_process(**overrides) -> Iterator[InProcess]:
    client = InProcess(**overrides)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def plain():
    with in_process() as client:
        # A scenario that never fires (latency 0) puts every edit call on the controlled path,
        # which reads the session and the bearer token from the headers.
        assert client.post("/__mock/scenarios", json={"latency_ms": 0, "session": SESSION}).status_code == 201
        yield client


@pytest.fixture(scope="module")
def keyed():
    """API keys and an admin token configured: the headers are compared with them."""
    with in_process(api_keys=frozenset({"test-key"}), admin_token="admin-secret") as client:
        yield client


@pytest.fixture(scope="module")
def scratch():
    with in_process() as client:
        yield client


def assert_json_error(response, status: int | None = None) -> dict:
    """An error answer outside the providers' routes: JSON, the shared envelope."""
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text[:300])
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    return error


def assert_provider_answer(response, path: str) -> None:
    """An edit endpoint's answer: a 200, or an error in the provider's envelope; a 5xx only
    when the request asked for that fault (the mock then says so in ``x-mock-fault``)."""
    injected = "x-mock-fault" in response.headers
    if not injected:
        assert response.status_code < 500, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    provider = PROVIDER_OF[path]
    if response.status_code >= 400:
        jsonschema.validate(body, ERROR_SCHEMAS[path])
        if has_error_field(provider, "request_id"):
            assert error_field(provider, body, "request_id") == response.headers["x-request-id"]
    else:
        assert response.status_code == 200, response.status_code
        jsonschema.validate(body, schema(provider, "response"))


# --- /files/<token>.png ------------------------------------------------------------------------

VALID = valid_token()  # <payload>.<signature> of a valid 8x8 link holding one image
# Characters str.isdigit() takes for digits that int() may refuse or read differently.
DIGITS = "0123456789²³¹١۱१１𝟙①߁٠"

digit_runs = st.builds(lambda digit, n: digit * n, st.sampled_from(DIGITS), st.integers(1, 6000))
offsets = st.one_of(st.text(max_size=20), digit_runs, st.text(alphabet=DIGITS, max_size=30),
                    st.integers(-(10**30), 10**30).map(str))
b64_text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=60)
tokens = st.one_of(
    st.text(),
    offsets.map(lambda offset: f"{VALID}.{offset}"),
    st.builds(lambda payload, signature, offset: f"{payload}.{signature}.{offset}", b64_text, b64_text, offsets),
    st.builds(lambda n: VALID + "." * n, st.integers(0, 5)),
)
# A path segment: a token percent-encoded whole, or written with escapes of its own.
segments = st.one_of(
    tokens.map(lambda token: quote(token, safe="")),
    offsets.map(lambda offset: f"{VALID}.{quote(offset, safe='')}"),
    st.sampled_from([f"{VALID}.%C2%B2", f"{VALID}.%D9%A1", f"{VALID}.%EF%BC%91", f"{VALID}.%FF", f"{VALID}.%00",
                     f"{VALID}.0%00", "%C2%B2", "%FF%FE", f"{VALID}.{'9' * 5000}", f"{VALID}.{'0' * 5000}"]),
)


@given(segment=segments)
def test_any_token_of_a_file_link_is_a_404_or_the_image(plain, segment):
    response = plain.get(f"/files/{segment}.png")
    event(f"status {response.status_code}")
    token = unquote(segment)
    if response.status_code == 200:
        # Only the one image this link holds: offset 0, however written in ASCII digits.
        offset = token[len(VALID) + 1:]
        assert token.startswith(VALID + ".") and offset and set(offset) == {"0"}, token[:200]
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (8, 8)
    else:
        assert_json_error(response, 404)


@pytest.mark.parametrize("name", sorted(file_paths_that_once_failed()))
def test_file_paths_that_were_500s_are_404s(plain, name):
    assert_json_error(plain.get(file_paths_that_once_failed()[name]), 404)


# --- forged links: signed with the public default key, never issued by the mock ------------------


@pytest.mark.parametrize("name", sorted(forged_payloads()))
def test_forged_link_the_mock_never_issued_is_a_404(plain, name):
    started = time.monotonic()
    response = plain.get(forged_path(forged_payloads()[name]))
    assert_json_error(response, 404)
    assert time.monotonic() - started < 5


def test_a_forged_link_like_an_issued_one_is_served(plain):
    # The control: the strategies below are not all rejected for a reason they share.
    response = plain.get(forged_path(forged_payload(spec_list(8, 8, palette=("#ff0000",)))))
    assert response.status_code == 200, response.text[:300]
    assert Image.open(io.BytesIO(response.content)).size == (8, 8)


json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=6)
# Sides whose product is small, or far over 50,000,000 pixels: a forged link just under that
# (test_forged_link_the_mock_never_issued_is_a_404 has one) would take seconds and gigabytes
# per example to draw where the mock does not refuse it.
sides = st.one_of(
    st.integers(-3, 64),
    st.sampled_from([0, -1, -(2**31), 2**31, 2**63, 2**64, 8.0, 2.5, -8.0, 1e10, -1e10, "8", "-3", "", "x", True]),
    st.none(), st.lists(st.integers(0, 9), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(0, 9), max_size=1),
)
colours = (st.from_regex(r"#[0-9a-f]{6}", fullmatch=True) | st.sampled_from(["#zzzzzz", "#fff", "", "#FFFFFF", "ff0000"])
           | json_values)
palettes = st.lists(colours, max_size=10) | st.lists(st.just("#123456"), min_size=250, max_size=300) | json_values
captions = st.text(max_size=200) | st.builds(lambda n: "c" * n, st.integers(161, 30_000)) | json_values
SPEC_FIELDS = {
    "width": sides,
    "height": sides,
    "seed": st.integers(-1, 2**31) | st.sampled_from([2**63, -(2**63)]) | json_values,
    "index": st.integers(-1, 70) | json_values,
    "fingerprint": st.text(alphabet="0123456789abcdef", max_size=20) | json_values,
    "caption": captions,
    "model": st.text(max_size=120) | json_values,
    "palette": palettes,
}
forged_specs = st.one_of(
    # A spec as the mock issues it, but for one field (or the size).
    st.sampled_from(sorted(SPEC_FIELDS)).flatmap(lambda name: SPEC_FIELDS[name].map(lambda v: spec_list(**{name: v}))),
    st.builds(lambda width, height: spec_list(width, height), sides, sides),
    st.builds(spec_list, **SPEC_FIELDS),  # anything
    json_values,
)
forged = st.builds(
    forged_payload,
    spec=forged_specs,
    provider=st.sampled_from(["powertokens", "modelverse"]) | json_values,
    expires=st.none() | st.integers() | json_values,
    count=st.just(1) | st.integers(-1, 70) | json_values,
) | json_values


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=forged)
@example(payload=forged_payload(spec_list(-3, -3)))
@example(payload=forged_payload(spec_list(8, 8, palette=["#zzzzzz"])))
@example(payload=forged_payload(spec_list(8, 8, palette=["#123456"] * 300)))
def test_forged_links_never_fail_and_never_draw_a_huge_image(plain, payload):
    response = plain.get(forged_path(payload))
    event(f"status {response.status_code}")
    if response.status_code == 200:
        spec = payload[0]
        width, height = spec[0], spec[1]
        assert type(width) is int and type(height) is int and 0 < width * height <= MAX_IMAGE_PIXELS, spec[:2]
        assert Image.open(io.BytesIO(response.content)).size == (width, height)
    else:
        assert response.status_code in (403, 404), (response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/json")
        assert "error" in response.json()


# --- the admin endpoints' query parameters -------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=30),
    digit_runs,
    st.sampled_from(["", " ", "0", "1", "-1", "+1", "1e3", "0x10", "²", "١", "１", "9" * 5000, "0" * 5000,
                     "powertokens", "modelverse", "POWERTOKENS", "null", "[]", "\u00a0", "\ufeff1"]),
)
optional = st.none() | odd_text
raw_queries = st.one_of(
    st.text(max_size=40).map(lambda text: quote(text, safe="=&;%+")),  # escapes of its own kept
    st.sampled_from(["limit=%C2%B2", "limit=%FF", "limit=%", "limit=%zz", "limit=1&limit=%C2%B2", "limit",
                     "provider=%00", "session=%FF%FE", "limit=" + "9" * 5000, "&&&=&=", "limit=1;2"]),
)


def _params(**values) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


@given(provider=optional, session=optional, limit=optional)
def test_journal_query_parameters(plain, provider, session, limit):
    response = plain.get("/__mock/requests", params=_params(provider=provider, session=session, limit=limit))
    event(f"status {response.status_code}")
    if response.status_code == 200:
        assert isinstance(response.json()["requests"], list)
    else:
        assert_json_error(response, 400)


@given(query=raw_queries)
def test_journal_raw_query_strings(plain, query):
    response = plain.get(f"/__mock/requests?{query}")
    if response.status_code != 200:
        assert_json_error(response, 400)
    assert response.headers["content-type"].startswith("application/json")


@given(method=st.sampled_from(["GET", "DELETE"]), session=optional, api_key=optional, query=st.none() | raw_queries)
def test_scenario_query_parameters(scratch, method, session, api_key, query):
    # A mock of its own: DELETE empties the book the other tests' probe scenario is in.
    scratch.delete("/__mock/scenarios")
    scratch.post("/__mock/scenarios", json={"fault": "rate_limit", "session": "s", "api_key": "k"})
    if query is None:
        response = scratch.request(method, "/__mock/scenarios", params=_params(session=session, api_key=api_key))
    else:
        response = scratch.request(method, f"/__mock/scenarios?{query}")
    assert response.status_code == 200, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")


@given(scenario_id=st.text(max_size=40) | digit_runs)
def test_scenario_ids(plain, scenario_id):
    response = plain.delete(f"/__mock/scenarios/{quote(scenario_id, safe='')}")
    if response.status_code != 200:
        assert_json_error(response, 404)


# --- every header the mock reads, on both edit endpoints ------------------------------------------

READ_HEADERS = ("authorization", "prefer", "x-request-id", "x-mock-session", "content-type", "content-length",
                "host", "x-mock-admin-token")
NETWORK_FAULTS = {"reset", "truncated", "slow_body"}
SLEEP_LIMIT_MS = 50  # a Prefer latency the fuzzing lets through: the rest would only sleep


def _latin1(text: str) -> bytes:
    return text.encode("latin-1", "replace")


header_text = st.one_of(
    st.text(max_size=40),
    digit_runs.filter(lambda run: len(run) < 200),
    st.sampled_from(["", " ", "Bearer", "Bearer ", "Bearer test-key", "bearer test-key", "Bearer  test-key ",
                     "Basic dGVzdA==", "Bearer \u00e9", "application/json", "application/json; charset=latin-1",
                     "text/plain", "multipart/form-data; boundary=x", "0", "-1", "²", "9" * 5000, "1e3",
                     "127.0.0.1:1", "[::1", "exa mple.com", "\u00ff" * 20, "x" * 20_000, "trace-123"]),
)
header_bytes = st.one_of(
    header_text.map(_latin1),
    header_text.map(str.encode),  # UTF-8: several bytes a character, as the server hands them on
    st.binary(max_size=40),
)

prefer_names = st.sampled_from(["code", "fault", "latency", "retry_after_ms", "pause_ms", "retry-after-ms",
                                "Pause-MS", "LATENCY", " code ", "respond-async", "return"]) | st.text(max_size=8)
prefer_values = st.one_of(
    st.text(max_size=12),
    digit_runs.filter(lambda run: len(run) < 100),
    st.sampled_from(["200", "400", "429", "500", "503", "504", "418", "rate_limit", "server_error", "timeout",
                     "moderation", "overloaded", "nope", "0", "5", "600001", "-1", "²", "1e3", '"429"',
                     "9" * 5000, " 429 ", "\u0661"]),
)
prefer_items = st.builds(lambda name, value: f"{name}={value}", prefer_names, prefer_values) | st.text(max_size=12)
prefer_headers = st.builds(lambda items, separator: separator.join(items), st.lists(prefer_items, max_size=4),
                           st.sampled_from([",", ";", ", ", " ; "]))


def harmless_prefer(value: bytes) -> bool:
    """Whether a Prefer header asks for nothing that would only make the test wait (a long
    latency) or that in-process clients cannot do (network faults)."""
    text = value.decode("latin-1")
    for item in text.replace(";", ",").split(","):
        name, _, given = item.partition("=")
        name, given = name.strip().lower().replace("-", "_"), given.strip().strip('"')
        if name == "latency" and given.isascii() and given.isdigit() and int(given) > SLEEP_LIMIT_MS:
            return False
        if name in ("fault", "code") and given in NETWORK_FAULTS:
            return False
        if name == "pause_ms":
            return False  # goes with slow_body only, but keep it simple
    return True


def header_sets(names: tuple[str, ...] = READ_HEADERS, values: st.SearchStrategy = header_bytes):
    per_name = {name: values for name in names}
    per_name["prefer"] = prefer_headers.map(_latin1) | values
    return st.fixed_dictionaries({}, optional=per_name)


def _send(client, path: str, headers: dict[str, bytes]):
    body = json.dumps(valid_body(path)).encode()
    merged = {"authorization": b"Bearer test-key", "content-type": b"application/json", **headers}
    return client.post(path, content=body, headers=merged)


@BOTH
@given(headers=header_sets(), use_keys=st.booleans())
# Values that were 500s: a Content-Length of non-ASCII digits, or of more than 4300 digits.
@example(headers={"content-length": b"\xb2"}, use_keys=False)
@example(headers={"content-length": "\u0661\u0662".encode()}, use_keys=False)
@example(headers={"content-length": b"9" * 5000}, use_keys=False)
@example(headers={"content-length": b"0" * 5000 + b"1"}, use_keys=True)
@example(headers={"prefer": b"latency=\xb2"}, use_keys=False)
@example(headers={"authorization": b"Bearer \xff\xfe"}, use_keys=True)
def test_any_value_of_any_header_the_mock_reads(plain, keyed, path, headers, use_keys):
    assume(harmless_prefer(headers.get("prefer", b"")))
    response = _send(keyed if use_keys else plain, path, headers)
    event(f"status {response.status_code}")
    assert_provider_answer(response, path)
    assert response.headers.get("x-request-id")


@given(headers=header_sets(("authorization", "x-mock-admin-token", "x-mock-session", "content-type",
                            "content-length", "host")),
       endpoint=st.sampled_from([("GET", "/__mock/requests"), ("GET", "/__mock/scenarios"),
                                 ("DELETE", "/__mock/requests"), ("POST", "/__mock/scenarios")]))
def test_any_header_on_the_admin_endpoints(keyed, headers, endpoint):
    method, path = endpoint
    content = b'{"fault": "rate_limit", "session": "admin-fuzz"}' if method == "POST" else None
    response = keyed.request(method, path, headers=headers, content=content)
    event(f"status {response.status_code}")
    if response.status_code >= 300:
        error = assert_json_error(response)
        assert response.status_code in (400, 401, 403, 413), error
    else:
        assert response.headers["content-type"].startswith("application/json")


# Over a real connection the client and the server's parser both have a say: field values as
# RFC 9110 has them (no control characters but tab, no whitespace at either end), and no
# Content-Length (that is framing).


def field_value(value: bytes) -> bool:
    return value.strip(b" \t") == value and all(b == 0x09 or 0x20 <= b <= 0x7E or b >= 0x80 for b in value)


wire_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                    max_size=40).map(str.strip)
wire_values = st.one_of(
    wire_text.map(_latin1),
    st.sampled_from([b"Bearer test-key", b"Bearer \xc3\xa9", b"\xc2\xb2", b"9" * 5000, b"x" * 20_000,
                     b"code=429", b"latency=5", b"latency=\xc2\xb2", b"code=" + b"9" * 5000, b"[::1"]),
)


@BOTH
@settings(max_examples=20)
@given(headers=header_sets(tuple(n for n in READ_HEADERS if n != "content-length"), wire_values))
def test_any_header_over_real_http(live_server, path, headers):
    headers = {name: value for name, value in headers.items() if field_value(value)}
    assume(harmless_prefer(headers.get("prefer", b"")))
    with httpx.Client(base_url=live_server.base_url, timeout=30) as http:
        response = _send(http, path, headers)
    assert_provider_answer(response, path)


# --- image URLs, when the mock may fetch them ------------------------------------------------------


@pytest.fixture(scope="module")
def fetching():
    with in_process(fetch_hosts=frozenset({"127.0.0.1", "localhost"})) as client:
        yield client


@pytest.mark.parametrize("name", sorted(fetch_urls_that_once_failed()))
def test_image_urls_that_were_500s(fetching, name):
    started = time.monotonic()
    response = fetching.post(MV, json=modelverse_body(fetch_urls_that_once_failed()[name]))
    assert_provider_answer(response, MV)
    assert time.monotonic() - started < 15


# Port 1 on 127.0.0.1: nothing listens there, so a fetch that gets that far is refused at once.
url_hosts = st.sampled_from(["127.0.0.1:1", "[::1]:1", "[::1", "127.0.0.1[", "127.0.0.1:", "127.0.0.1:port",
                             "127.0.0.1:99999", "localhost:1", "127.0.0.1:1@example.com", "\u0661.0.0.1", ""])


@given(scheme=st.sampled_from(["http://", "https://", "HTTP://", "http:/", "http:"]), host=url_hosts,
       rest=st.text(max_size=30) | st.sampled_from(["\t", "\n", "\x00", "\x7f", "/a b", "/" + "a" * 70_000]))
def test_any_image_url_with_fetching_on(fetching, scheme, host, rest):
    response = fetching.post(MV, json=modelverse_body(scheme + host + rest))
    event(f"status {response.status_code}")
    assert_provider_answer(response, MV)


# --- the journal reads back what it was given ------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 300, 1000])
@BOTH
def test_the_journal_shows_deeply_nested_bodies(path, depth):
    with in_process() as client:
        sent = client.post(path, content=nested_body(depth, path), headers={"content-type": "application/json"})
        assert sent.status_code < 500, sent.text[:300]
        journal = client.get("/__mock/requests")
    assert journal.status_code == 200, journal.text[:300]
    assert len(journal.json()["requests"]) == 1


# --- time: nothing a request does can hold the mock -----------------------------------------------

FETCH_TIME_LIMIT = 10.0  # README: a download gets 10 s in all
# The slack over that: decoding, a busy machine; far less than a host dripping for minutes.
FETCH_SLACK = 5.0


def test_a_host_dripping_an_image_cannot_hold_a_fetch_past_its_time_limit():
    # One byte every 2 s: never silent long enough for a per-read timeout; here for 30 s.
    drip = DripServer(interval=2.0, for_seconds=30.0)
    try:
        with ServerProcess(env={"QWEN_MOCK_FETCH_HOSTS": "127.0.0.1"}) as server, \
                httpx.Client(base_url=server.base_url, timeout=FETCH_TIME_LIMIT + FETCH_SLACK + 20) as http:
            started = time.monotonic()
            response = http.post(MV, json=modelverse_body(f"http://127.0.0.1:{drip.port}/slow.png"), headers=AUTH)
            took = time.monotonic() - started
    finally:
        drip.close()
    assert took <= FETCH_TIME_LIMIT + FETCH_SLACK, f"the fetch held the request {took:.1f} s"
    assert_provider_answer(response, MV)
    assert response.status_code == 400
    assert "image" in response.json()["error"]["message"]


# A stopping server waits this long for requests in flight before cancelling them; a
# Prefer latency of ten minutes must not keep it running.
SHUTDOWN_LIMIT = 15.0


def _probe(http: httpx.Client) -> None:
    # Counts the calls of its session (latency 0; a Prefer latency wins over it): shows when
    # a request has reached the mock.
    assert http.post("/__mock/scenarios", json={"latency_ms": 0, "session": "probe"}).status_code == 201


def _wait_for_call(http: httpx.Client, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while http.get("/__mock/scenarios").json()["scenarios"][0]["calls"] < 1:
        assert time.monotonic() < deadline, "the request did not reach the mock"
        time.sleep(0.02)


def test_sigterm_does_not_wait_out_a_long_prefer_latency():
    with ServerProcess() as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        _probe(http)
        body = json.dumps(modelverse_body("https://example.com/a.png")).encode()
        head = post_head(MV, server.port, len(body), "Prefer: latency=600000\r\nX-Mock-Session: probe\r\n")
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + body)
            _wait_for_call(http)
            took = server.terminate(timeout=SHUTDOWN_LIMIT + 5)
    assert took is not None and took <= SHUTDOWN_LIMIT, f"SIGTERM to exit: {took} s (killed if None)"


def test_a_prefer_latency_ends_when_the_client_leaves():
    """Also when the body was over the limit and not all sent: the mock stops reading it
    past the limit, and must still notice the client leave."""
    with ServerProcess() as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        _probe(http)
        for sent, declared in ((0, None), (BODY_LIMIT + 2**20, 2 * BODY_LIMIT)):
            http.delete("/__mock/requests")
            body = json.dumps(modelverse_body("https://example.com/a.png")).encode() if not sent else b" " * sent
            head = post_head(MV, server.port, declared or len(body),
                             "Prefer: latency=600000\r\nX-Mock-Session: probe\r\n")
            calls = http.get("/__mock/scenarios").json()["scenarios"][0]["calls"]
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(head + body)
                deadline = time.monotonic() + 10
                while http.get("/__mock/scenarios").json()["scenarios"][0]["calls"] <= calls:
                    assert time.monotonic() < deadline, "the request did not reach the mock"
                    time.sleep(0.02)
                assert wait_until_reading_stops(server.port, sock) is not None, "the mock never stopped reading"
            left = time.monotonic()
            # The journal records a request when it ends.
            while not http.get("/__mock/requests").json()["requests"]:
                assert time.monotonic() - left < 5, (
                    f"{'a body over the limit' if sent else 'a whole body'}: still sleeping 5 s after the client left")
                time.sleep(0.05)


# A connection must finish sending its request within this long (the server's read timeout,
# set here through QWEN_MOCK_READ_TIMEOUT, the setting the fix adds).
READ_TIMEOUT = 2.0
DRIBBLERS = 20


def test_connections_dribbling_a_body_are_closed():
    with ServerProcess(env={"QWEN_MOCK_READ_TIMEOUT": str(READ_TIMEOUT)}) as server:
        socks = []
        try:
            for _ in range(DRIBBLERS):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(post_head(MV, server.port, 1000))
                sock.setblocking(False)
                socks.append(sock)
            started = time.monotonic()
            open_ = set(range(DRIBBLERS))
            # A byte every 0.2 s for at most READ_TIMEOUT + 8 s: each connection must be
            # answered (408) or closed by then.
            while open_ and time.monotonic() - started < READ_TIMEOUT + 8:
                for index in list(open_):
                    try:
                        socks[index].recv(65536)  # an answer (408), or the close
                        open_.discard(index)
                        continue
                    except BlockingIOError:
                        pass  # nothing yet
                    except OSError:
                        open_.discard(index)
                        continue
                    try:
                        socks[index].send(b" ")
                    except OSError:
                        open_.discard(index)
                time.sleep(0.2)
        finally:
            for sock in socks:
                sock.close()
    assert not open_, f"{len(open_)} of {DRIBBLERS} connections still open {time.monotonic() - started:.0f} s later"

"""Nothing a request sends can make the mock use memory without bound: each hostile request
from the issue, sent to a real server process, is answered in time with a 4xx (or a 200 of
bounded size where the request is valid), and the server's peak resident memory (VmHWM,
from /proc) stays within a stated bound.

Each test starts its own server, so its peak is its own. The requests are built in
``hostile.py``, which also measures them (``python tests/hostile.py``).

What the requests cost before the mock bounded them (idle ~56 MB; VmHWM at the peak):
a 6 KB PNG of 50,000,000x1 sent to modelverse 1.8 GB; 40 prompts of 19.9 MiB kept in the
journal 1.7 GB (reading it back included); 41 GET /nope with a 10 MiB header 487 MB; 2,686
forged links with 47,000-character captions 214 MB; one 20 MiB POST /__mock/scenarios
4.1 GB in 31 s.
"""

from __future__ import annotations

import base64
import io
import os
import time

import httpx
import pytest
from hostile import (
    AUTH,
    HEAD_LIMIT,
    HUGE_INPUTS,
    JOURNAL_STRING_LIMIT,
    JSON_HEADERS,
    MAX_OUTPUT_PIXELS,
    MIB,
    MV,
    PT,
    HealthWatch,
    ServerProcess,
    big_header_head,
    caption_link,
    expected_output_size,
    huge_input_request,
    long_prompt_body,
    nested_body,
    raw_request,
    replay_cassette,
    scenarios_body,
    values_body,
)
from PIL import Image

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                                reason="reads the server's memory from /proc (Linux)")

# The server's peak resident memory (VmHWM) may not exceed this, whatever it is sent.
# Physics: it idles at ~56-70 MB; decoding one 49-megapixel input (the most the schemas
# admit) costs ~190-250 MB while it lasts if decoded in full (measured: 291 MB peak for a
# 7000x7000 PNG, output included); reading and parsing a 20 MiB body a few copies of it,
# ~100 MB. So a mock that bounds its work peaks at ~300 MB at most on these requests, sent
# one at a time (the fix in progress: 105-177 MB); 600 MB leaves room for a busy CI
# machine's allocator, and is still far below what the breaks cost: 1.8 GB (50,000,000x1
# input), 935 MB-1.7 GB (journal of long prompts).
PEAK_RSS_BOUND = 600 * MIB

# For requests the mock should refuse from their head or first bytes (a 431 or a 413), the
# growth of the peak over idle: the server reads a head in 64 KiB pieces and a refused body
# not at all, so little grows (the fix in progress: +28 MB for 10 MiB heads, which plateaus,
# +0.2 MB for a 20 MiB scenarios body); 64 MiB is slack for a busy allocator. The breaks:
# +600 MB (60 heads of 10 MiB), +202 MB (a 1 MiB body of 60,000 scenarios), +4 GB (20 MiB).
SMALL_GROWTH_BOUND = 64 * MIB

# What the journal may hold on to after 40 bodies of 20 MiB: strings cut to 16,384
# characters make its entries well under a megabyte; the rest is the allocator keeping
# freed memory (the fix in progress: +94 MB). Before: +860 MB.
RETAINED_BOUND = 256 * MIB

# Each hostile request is answered within this long: the slowest, decoding a 49-megapixel
# input and drawing a 2048x2048 output, takes ~1 s here; reading a 20 MiB body ~0.3 s.
ANSWER_SECONDS = 15.0
QUICK_SECONDS = 5.0  # for what should be refused at once


def peak_growth(server: ServerProcess) -> int:
    return server.memory()["VmHWM"] - server.idle["VmHWM"]


def assert_peak_within(server: ServerProcess, bound: int = PEAK_RSS_BOUND) -> None:
    peak = server.memory()["VmHWM"]
    assert peak <= bound, f"peak RSS {peak / MIB:.0f} MB > {bound / MIB:.0f} MB (idle {server.idle['VmHWM'] / MIB:.0f} MB)"


def assert_growth_within(server: ServerProcess, bound: int = SMALL_GROWTH_BOUND) -> None:
    growth = peak_growth(server)
    assert growth <= bound, f"peak RSS grew {growth / MIB:.0f} MB over idle; bound {bound / MIB:.0f} MB"


def assert_error(response: httpx.Response, *statuses: int) -> dict:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()["error"]


def answered_within(http: httpx.Client, method: str, url: str, seconds: float, **kwargs
                    ) -> tuple[httpx.Response, float]:
    """The answer and how long it took; a test failure (not a timeout error) past ``seconds``."""
    started = time.monotonic()
    try:
        response = http.request(method, url, timeout=seconds, **kwargs)
    except httpx.TimeoutException:
        pytest.fail(f"{method} {url} not answered within {seconds} s")
    took = time.monotonic() - started
    assert took <= seconds, f"{method} {url} answered in {took:.1f} s, more than {seconds} s"
    return response, took


def journal_entries(http: httpx.Client, count: int) -> list[dict]:
    """The journal once it holds ``count`` entries (it records a request just after
    answering it); every read of it must succeed."""
    deadline = time.monotonic() + QUICK_SECONDS
    while True:
        journal = http.get("/__mock/requests")
        assert journal.status_code == 200, journal.text[:300]
        entries = journal.json()["requests"]
        if len(entries) >= count:
            return entries
        assert time.monotonic() < deadline, f"the journal holds {len(entries)} entries, not {count}"
        time.sleep(0.05)


@pytest.fixture
def server():
    with ServerProcess() as process:
        yield process


# --- (1) modelverse output follows a huge input -------------------------------------------------


def _output_image(response: httpx.Response) -> Image.Image:
    payload = response.json()["data"][0]["b64_json"].rpartition("base64,")[2]
    image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    image.load()
    return image


INPUT_SIZES = {"png-50000000x1": (50_000_000, 1), "png-7000x7000": (7000, 7000),
               "jpeg-truncated-7000x7000": (7000, 7000)}


def test_huge_inputs_give_bounded_outputs_in_bounded_memory(server):
    problems = []
    with httpx.Client(base_url=server.base_url, timeout=ANSWER_SECONDS) as http:
        for kind in HUGE_INPUTS:
            response, _ = answered_within(http, "POST", MV, ANSWER_SECONDS, json=huge_input_request(kind),
                                          headers=AUTH)
            if kind.startswith("jpeg-truncated") and response.status_code == 400:
                continue  # a truncated image may be refused; if accepted, its output is bounded
            if response.status_code != 200:
                problems.append(f"{kind}: {response.status_code} {response.text[:200]}")
                continue
            width, height = _output_image(response).size
            expected = expected_output_size(*INPUT_SIZES[kind])
            if width * height > MAX_OUTPUT_PIXELS or abs(width - expected[0]) > 1 or abs(height - expected[1]) > 1:
                problems.append(f"{kind}: output {width}x{height}, expected {expected[0]}x{expected[1]} (8:1 at "
                                f"most, then at most {MAX_OUTPUT_PIXELS} pixels)")
            if len(response.content) > 32 * MIB:
                problems.append(f"{kind}: a {len(response.content) / MIB:.0f} MB answer")
    peak = server.memory()["VmHWM"]
    if peak > PEAK_RSS_BOUND:
        problems.append(f"peak RSS {peak / MIB:.0f} MB > {PEAK_RSS_BOUND / MIB:.0f} MB")
    assert not problems, "\n".join(problems)


# --- (2) the render cache and forged links ------------------------------------------------------

FORGED_LINKS = 1500
CACHE_BYTES = 4 * MIB
# Growth of the peak over idle allowed to forged links refused at once, over the render
# cache's own budget (the fix in progress: +11 MB for 1,000). Before, each kept its 47 KB
# caption as a cache key beside a 1x1 PNG the budget counted: ~+64 MB per 1,000.
FORGED_GROWTH_SLACK = 32 * MIB


def test_forged_links_with_long_captions_cannot_fill_memory():
    # The journal off (it would keep the 63 KB paths) and a small render cache: what grows
    # is what forged links can make the mock keep.
    env = {"QWEN_MOCK_JOURNAL_CAP": "0", "QWEN_MOCK_RENDER_CACHE_BYTES": str(CACHE_BYTES)}
    with ServerProcess(env=env) as server:
        statuses: dict[int | None, int] = {}
        for number in range(FORGED_LINKS):
            # Over a plain socket: httpx takes ~10 ms to parse a 63 KB URL.
            head = f"GET {caption_link(number)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            answer = raw_request(server.port, head.encode(), timeout=QUICK_SECONDS)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
        growth = peak_growth(server)
    # No caption of the mock's own is longer than 160 characters: these were not issued.
    assert statuses == {404: FORGED_LINKS} and growth <= CACHE_BYTES + FORGED_GROWTH_SLACK, (
        f"answers {statuses}; peak RSS grew {growth / MIB:.0f} MB over idle, bound "
        f"{(CACHE_BYTES + FORGED_GROWTH_SLACK) / MIB:.0f} MB")


# --- (3) the journal ------------------------------------------------------------------------------

LONG_PROMPTS = 40
JOURNAL_RESPONSE_BOUND = 4 * MIB  # 40 entries of 16,384-character prompts and change


def test_the_journal_of_long_prompts_is_bounded(server):
    body = long_prompt_body()  # just under the 20 MiB limit: a valid request
    with httpx.Client(base_url=server.base_url, timeout=ANSWER_SECONDS) as http:
        for _ in range(LONG_PROMPTS):
            response, _ = answered_within(http, "POST", MV, ANSWER_SECONDS, content=body, headers=JSON_HEADERS)
            assert response.status_code == 200, response.text[:300]
        assert_peak_within(server)
        # The journal records a request just after answering it.
        deadline = time.monotonic() + QUICK_SECONDS
        while True:
            journal = http.get("/__mock/requests")
            if journal.status_code != 200 or len(journal.json()["requests"]) >= LONG_PROMPTS:
                break
            assert time.monotonic() < deadline, "the journal did not record every request"
            time.sleep(0.05)
    assert journal.status_code == 200
    assert len(journal.content) <= JOURNAL_RESPONSE_BOUND, f"the journal answered {len(journal.content) / MIB:.0f} MB"
    entries = journal.json()["requests"]
    assert len(entries) == LONG_PROMPTS
    for entry in entries:
        prompt = entry["body"]["prompt"]
        assert len(prompt) <= JOURNAL_STRING_LIMIT + 64, len(prompt)
        assert "truncated" in prompt[JOURNAL_STRING_LIMIT:], prompt[-80:]
        assert entry["body_bytes"] == len(body)
    retained = server.memory()["VmRSS"] - server.idle["VmRSS"]
    assert retained <= RETAINED_BOUND, f"{retained / MIB:.0f} MB still held after the requests"
    assert_peak_within(server)


BIG_HEADERS = 60
BIG_HEADER_BYTES = 10 * MIB


def test_request_heads_over_64_kib_are_431_and_cost_nothing(server):
    for _ in range(BIG_HEADERS):
        answer = raw_request(server.port, big_header_head(port=server.port, header_bytes=BIG_HEADER_BYTES),
                             timeout=QUICK_SECONDS)
        assert answer.status == 431, (answer.status, answer.error, answer.body[:200])
        assert answer.seconds < QUICK_SECONDS
    assert_growth_within(server)


def test_long_header_values_are_cut_in_the_journal(server):
    # Under the 64 KiB head limit, over the journal's 16,384 characters.
    value = "v" * (HEAD_LIMIT - 4096)
    with httpx.Client(base_url=server.base_url, timeout=QUICK_SECONDS) as http:
        assert http.get("/nope", headers={"x-long": value}).status_code == 404
        entries = journal_entries(http, 1)
    kept = entries[-1]["headers"]["x-long"]
    assert len(kept) <= JOURNAL_STRING_LIMIT + 64 and "truncated" in kept[JOURNAL_STRING_LIMIT:], kept[-80:]


@pytest.mark.parametrize("path", [PT, MV], ids=["powertokens", "modelverse"])
def test_deeply_nested_bodies_then_the_journal(server, path):
    with httpx.Client(base_url=server.base_url, timeout=QUICK_SECONDS) as http:
        for depth in (300, 1000):
            response = http.post(path, content=nested_body(depth, path), headers=JSON_HEADERS)
            assert response.status_code < 500, response.text[:300]
        journal_entries(http, 2)


# --- (4) scenarios ----------------------------------------------------------------------------------

ADMIN_BODY_LIMIT = MIB


def test_a_20_mib_scenarios_body_is_413_at_once(server):
    body = scenarios_body(20 * MIB)  # over a million valid scenarios
    with HealthWatch(server.base_url) as watch, \
            httpx.Client(base_url=server.base_url, timeout=QUICK_SECONDS) as http:
        response, _ = answered_within(http, "POST", "/__mock/scenarios", QUICK_SECONDS, content=body)
    assert_error(response, 413)
    assert watch.longest < 2.0, f"GET /healthz waited {watch.longest:.1f} s meanwhile"
    assert_growth_within(server)


def test_a_scenarios_body_under_the_limit_but_over_the_count_is_refused_cheaply(server):
    body = scenarios_body(ADMIN_BODY_LIMIT - 1024)  # ~60,000 scenarios: more than the mock holds
    assert len(body) <= ADMIN_BODY_LIMIT
    with httpx.Client(base_url=server.base_url, timeout=QUICK_SECONDS) as http:
        response, took = answered_within(http, "POST", "/__mock/scenarios", QUICK_SECONDS, content=body)
        assert http.get("/__mock/scenarios").json()["scenarios"] == []
    assert_error(response, 400)
    assert_growth_within(server)
    assert took < 2.0, f"{took:.1f} s to refuse it"


# --- (8) a body's structure, and a replaying mock --------------------------------------------------

# Measured before the bound (`python tests/hostile.py --src <checkout> --only values values-replay
# values-replay-strict`): values_body() peaked at 813 MB on the plain mock (1.2 s), 885 MB with
# --replay (2.3 s), and 2.3 GB in 41 s with --replay-strict, the event loop blocked meanwhile.
@pytest.mark.parametrize("replay", ["none", "loose", "strict"])
def test_a_body_of_millions_of_values_is_refused_before_it_is_parsed(tmp_path, replay):
    args = [] if replay == "none" else ["--replay", replay_cassette(tmp_path / "cassette")]
    args += ["--replay-strict"] if replay == "strict" else []
    with ServerProcess(args=args) as server, HealthWatch(server.base_url) as watch, \
            httpx.Client(base_url=server.base_url) as http:
        response, _ = answered_within(http, "POST", MV, QUICK_SECONDS, content=values_body(),
                                      headers=JSON_HEADERS)
        assert_error(response, 413)
        assert watch.longest < 2.0, f"GET /healthz waited {watch.longest:.1f} s meanwhile"
        assert_growth_within(server)


def test_a_strict_miss_under_the_value_bound_is_cheap(tmp_path):
    from mockserver.http.body import MAX_JSON_VALUES

    body = values_body(MAX_JSON_VALUES - 100, b'"abcdefghij"').replace(b'"prompt":"p"', b'"prompt":"q"')
    args = ["--replay", replay_cassette(tmp_path / "cassette"), "--replay-strict"]
    with ServerProcess(args=args) as server, httpx.Client(base_url=server.base_url) as http:
        response, _ = answered_within(http, "POST", MV, QUICK_SECONDS, content=body, headers=JSON_HEADERS)
        error = assert_error(response, 404)
        assert "body.prompt (recorded \"p\", sent \"q\")" in error["message"] and len(error["message"]) < 2000
        assert_growth_within(server)

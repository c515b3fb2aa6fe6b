"""The recording proxy's bounds and manners, against small upstreams in process: answers
relayed unchanged (past the caps too, just not recorded), nothing retried, no key kept,
credentials never sent to a link, every bound enforced where it is spent."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from cassette_support import KEY, call, calls, exchanges, files_under, in_process_proxy, mock_app, powertokens_body

from mockserver.cassettes.proxy import check_upstream

AUTH = {"Authorization": f"Bearer {KEY}"}
EDITS = "/v1/images/edits"
KIB = 1024


class Upstream:
    """A scripted upstream: answers each request with ``answer(scope, body)`` -> (status,
    headers, body chunks, delay), and keeps what it was sent."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append((scope["method"], scope["path"], headers, body))
        status, answer_headers, chunks, delay = self.answer(scope, body)
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in answer_headers]})
        for index, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})
        if not chunks:
            await send({"type": "http.response.body", "body": b""})


def json_answer(payload, status=200, headers=(), delay=0.0):
    return lambda scope, body: (status, [("content-type", "application/json"), *headers], [orjson.dumps(payload)],
                                delay)


def test_every_provider_path_is_relayed_only_edit_calls_are_recorded(tmp_path):
    cassette = tmp_path / "cassette"
    proxy = in_process_proxy(mock_app(), cassette)
    models, edit, health, elsewhere = calls(
        proxy, ("GET", "/v1/models", {"headers": AUTH}), ("POST", EDITS, {"json": powertokens_body(), "headers": AUTH}),
        ("GET", "/healthz", {}), ("GET", "/somewhere", {}))
    assert models.status_code == 200 and "Qwen/Qwen-Image-Edit" in models.text
    assert edit.status_code == 200 and health.json() == {"status": "ok"}
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "not_found"
    assert [e["request"]["path"] for e in exchanges(cassette)] == [EDITS]


def test_headers_go_through_both_ways_the_key_is_kept_by_its_form_only(tmp_path):
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "authentication_error",
                      "param": None, "code": "InvalidApiKey"}}
    upstream = Upstream(json_answer(echo, 401, [("set-cookie", f"session={KEY}"), ("x-request-id", "up-1"),
                                                ("retry-after", "3"), ("x-internal", "secret-ish")]))
    proxy = in_process_proxy(upstream, tmp_path / "cassette")
    answer = call(proxy, "POST", EDITS, content=b"{}", headers={**AUTH, "X-Custom": "1", "Connection": "keep-alive",
                                                               "Accept-Encoding": "gzip"})
    method, path, sent, _ = upstream.seen[0]
    assert sent["authorization"] == f"Bearer {KEY}" and sent["x-custom"] == "1"
    assert sent["accept-encoding"] == "identity" and sent["host"] == "upstream.test"
    assert "user-agent" not in sent or sent["user-agent"].startswith("python-httpx")  # the client's own
    # the client gets the upstream's answer as it was, cookie and all
    assert answer.status_code == 401 and answer.json() == echo and answer.headers["set-cookie"] == f"session={KEY}"
    [exchange] = exchanges(tmp_path / "cassette")
    assert exchange["response"]["headers"] == {"content-type": "application/json", "retry-after": "3",
                                               "x-request-id": "up-1"}
    assert exchange["response"]["body"]["error"]["message"] == "Incorrect API key provided: [redacted]"
    assert exchange["request"]["credentials"] == "bearer"
    for file in files_under(tmp_path / "cassette"):
        assert KEY.encode() not in file.read_bytes()


def test_a_key_in_the_query_is_forwarded_but_never_kept_and_still_matches_on_replay(tmp_path):
    from starlette.testclient import TestClient

    from mockserver import Settings, create_app

    queries = []

    def answer(scope, body):
        queries.append(scope["query_string"].decode())
        return json_answer({"created": 1, "data": []})(scope, body)

    proxy = in_process_proxy(Upstream(answer), tmp_path / "cassette")
    query = f"api_key={KEY}&x-amz-signature=abc123&mode=fast&note={KEY}"
    assert call(proxy, "POST", f"{EDITS}?{query}", json={}, headers=AUTH).status_code == 200
    assert queries == [query]  # forwarded as it came
    [exchange] = exchanges(tmp_path / "cassette")
    assert exchange["request"]["query"] == "api_key=[redacted]&x-amz-signature=[redacted]&mode=fast&note=[redacted]"
    for file in files_under(tmp_path / "cassette"):
        assert KEY.encode() not in file.read_bytes() and b"abc123" not in file.read_bytes()
    with TestClient(create_app(Settings(replay=str(tmp_path / "cassette")))) as client:
        again = client.post(f"{EDITS}?{query}", json={}, headers=AUTH)
        other = client.post(f"{EDITS}?{query.replace('fast', 'slow')}", json={}, headers=AUTH)
    assert again.headers["x-mock-replay"] == "hit" and other.headers["x-mock-replay"] == "miss"


def test_nothing_is_retried(tmp_path, caplog):
    failing = Upstream(json_answer({"error": {"message": "boom"}}, 500))
    proxy = in_process_proxy(failing, tmp_path / "a")
    assert call(proxy, "POST", EDITS, json={}, headers=AUTH).status_code == 500
    assert len(failing.seen) == 1

    attempts = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("refused", request=request)

    proxy = in_process_proxy(mock_app(), tmp_path / "b")
    proxy.transport = httpx.MockTransport(refuse)
    answer = call(proxy, "POST", EDITS, json={}, headers=AUTH)
    assert answer.status_code == 502 and answer.headers["x-mock-proxy-error"] == "upstream_unreachable"
    assert "does not retry" in answer.json()["error"]["message"] and len(attempts) == 1
    assert exchanges(tmp_path / "b") == []


def test_an_upstream_too_slow_is_a_504_and_not_recorded(tmp_path):
    slow = Upstream(json_answer({"created": 1, "data": []}, delay=5))
    proxy = in_process_proxy(slow, tmp_path / "cassette", upstream_timeout=0.2)
    answer = call(proxy, "POST", EDITS, json={}, headers=AUTH)
    assert answer.status_code == 504 and "--upstream-timeout" in answer.text
    assert exchanges(tmp_path / "cassette") == []


def test_a_body_over_the_limit_is_refused_unread_and_not_forwarded(tmp_path):
    upstream = Upstream(json_answer({}))
    proxy = in_process_proxy(upstream, tmp_path / "cassette", max_body_bytes=1000)
    answer = call(proxy, "POST", EDITS, content=b"x" * 5000, headers=AUTH)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "RequestTooLarge"
    assert upstream.seen == []


def test_an_answer_over_the_exchange_cap_is_relayed_whole_and_not_recorded(tmp_path, caplog):
    chunks = [b'{"created": 1, "data": [], "padding": "', *[b"x" * 16 * KIB] * 8, b'"}']
    upstream = Upstream(lambda scope, body: (200, [("content-type", "application/json")], chunks, 0))
    proxy = in_process_proxy(upstream, tmp_path / "cassette", cassette_max_exchange_bytes=64 * KIB)
    with caplog.at_level(logging.WARNING, logger="qwen_image_mock.record"):
        answer = call(proxy, "POST", EDITS, json={}, headers=AUTH)
    assert answer.status_code == 200 and answer.content == b"".join(chunks)
    assert exchanges(tmp_path / "cassette") == []
    assert "relayed, not recorded" in caplog.text and "--cassette-max-exchange-bytes" in caplog.text


def test_the_cassette_stops_growing_at_its_cap(tmp_path, caplog):
    proxy = in_process_proxy(mock_app(), tmp_path / "cassette", cassette_max_bytes=64 * KIB)
    with caplog.at_level(logging.WARNING, logger="qwen_image_mock.record"):
        answers = calls(proxy, *[("POST", EDITS, {"json": powertokens_body(seed=seed, response_format="b64_json"),
                                                  "headers": AUTH}) for seed in range(12)])
    assert all(a.status_code == 200 for a in answers)
    kept = exchanges(tmp_path / "cassette")
    assert 0 < len(kept) < 12
    assert sum(f.stat().st_size for f in files_under(tmp_path / "cassette")) <= 64 * KIB
    assert "--cassette-max-bytes" in caplog.text


def test_image_downloads_are_bounded_in_size_and_time_and_never_carry_the_key(tmp_path):
    def answer(scope, body):
        if scope["path"].startswith("/files/big"):
            return 200, [("content-type", "image/png")], [b"\x89PNG\r\n\x1a\n" + b"x" * 100 * KIB], 0
        if scope["path"].startswith("/files/slow"):
            return 200, [("content-type", "image/png")], [b"\x89PNG\r\n\x1a\n"], 3
        if scope["path"].startswith("/files/ok"):
            return 200, [("content-type", "image/png")], [b"\x89PNG\r\n\x1a\nfine"], 0
        links = [{"url": f"http://upstream.test/files/{name}.png?Signature=s3cr3t"}
                 for name in ("big", "ok", "slow", "ok-too-late")]
        return 200, [("content-type", "application/json")], [orjson.dumps({"created": 1, "data": links})], 0

    upstream = Upstream(answer)
    proxy = in_process_proxy(upstream, tmp_path / "cassette", cassette_max_exchange_bytes=64 * KIB,
                             download_timeout=0.3)
    assert call(proxy, "POST", EDITS, json={}, headers=AUTH).status_code == 200
    [exchange] = exchanges(tmp_path / "cassette")
    big, ok, slow, late = (item["url"] for item in exchange["response"]["body"]["data"])
    assert big["$image"] is None and "bytes left" in big["unavailable"]
    assert ok["$image"] and ok["link"] == "http://upstream.test/files/ok.png"  # the signed query is not kept
    # --download-timeout is for all of an answer's links: the client is waiting
    assert slow["$image"] is None and "--download-timeout" in slow["unavailable"]
    assert late["$image"] is None and late["unavailable"] == slow["unavailable"]
    downloads = [seen for seen in upstream.seen if seen[0] == "GET"]
    assert len(downloads) == 3 and all("authorization" not in headers for _, _, headers, _ in downloads)
    assert b"s3cr3t" not in (tmp_path / "cassette" / "exchanges" / "0001-powertokens-200.json").read_bytes()


def test_an_answer_with_thousands_of_links_downloads_sixteen(tmp_path):
    from mockserver.cassettes.proxy import MAX_DOWNLOADS

    def answer(scope, body):
        if scope["method"] == "GET":
            return 200, [("content-type", "image/png")], [b"\x89PNG\r\n\x1a\n" + scope["path"].encode()], 0
        links = [{"url": f"http://upstream.test/files/{number}.png"} for number in range(2000)]
        return 200, [("content-type", "application/json")], [orjson.dumps({"created": 1, "data": links})], 0

    upstream = Upstream(answer)
    proxy = in_process_proxy(upstream, tmp_path / "cassette")
    assert call(proxy, "POST", EDITS, json={}, headers=AUTH).status_code == 200
    [exchange] = exchanges(tmp_path / "cassette")
    images = [item["url"] for item in exchange["response"]["body"]["data"]]
    assert all(image["$image"] for image in images[:MAX_DOWNLOADS]) and MAX_DOWNLOADS == 16
    assert {image["unavailable"] for image in images[MAX_DOWNLOADS:]} == {"more than 16 image links in one answer"}
    assert len([seen for seen in upstream.seen if seen[0] == "GET"]) == MAX_DOWNLOADS


@pytest.mark.parametrize("url, problem", [
    ("ftp://example.com", "http(s) URL"), ("https://user:pw@example.com", "no credentials"),
    ("https://example.com?key=1", "no credentials, query"), ("not a url", "http(s) URL"),
])
def test_the_upstream_url_is_checked(url, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        check_upstream(url)


def test_record_refuses_bad_options_before_it_listens(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mockserver", "record", "--upstream", "https://u:p@example.com",
                           "--cassette", str(tmp_path / "c")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no credentials" in done.stderr
    done = subprocess.run([sys.executable, "-m", "mockserver", "record", "--upstream", "https://example.com",
                           "--cassette", str(tmp_path / "c"), "--cassette-max-bytes", "10"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cassette_max_bytes must be between" in done.stderr
    # a cassette recorded from one upstream is not added to from another
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "cassette.json").write_text(json.dumps(
        {"format": "qwen-image-mock cassette", "version": 1, "upstream": "https://one.example"}))
    done = subprocess.run([sys.executable, "-m", "mockserver", "record", "--upstream", "https://two.example",
                           "--cassette", str(tmp_path / "c")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "record into another directory" in done.stderr


def test_recording_adds_to_a_cassette_in_order(tmp_path):
    cassette = tmp_path / "cassette"
    for seed in (1, 2):
        proxy = in_process_proxy(mock_app(), cassette)
        call(proxy, "POST", EDITS, json=powertokens_body(seed=seed), headers=AUTH)
    names = sorted(path.name for path in (cassette / "exchanges").iterdir())
    assert names == ["0001-powertokens-200.json", "0002-powertokens-200.json"]
    assert all(oct(path.stat().st_mode & 0o777) == "0o644" for path in files_under(cassette))
    assert not [p for p in Path(cassette).rglob(".tmp-*")]

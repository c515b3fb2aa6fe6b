"""``check --cassette``: the contract kit's checks on recorded exchanges, offline. A clean
cassette passes; one edited to break a rule (no ``created``, the wrong image size) fails
that rule with its source; a drifted upstream (a small ASGI app renaming or dropping a field)
is caught without a request being sent; and a kit run through the recording proxy leaves a
cassette that holds its whole plan, which checks the same offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cassette_support import KEY, Recorder, call, calls, exchanges, in_process_proxy, mock_app, powertokens_body
from conftest import LiveServer

from mockserver.testing import sample_data_uri

pytest_plugins = ("pytester",)
ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": f"Bearer {KEY}"}
EDITS = "/v1/images/edits"
GENERATIONS = "/v1/images/generations"
DASHSCOPE = "/api/v1/services/aigc/multimodal-generation/generation"


def run_check(pytester: pytest.Pytester, cassette: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """The contract suite on a cassette, in this process (as `qwen-image-mock check --cassette` runs it)."""
    report = pytester.path / "report"
    result = pytester.runpytest_inprocess(
        str(ROOT / "contract_tests"), "-c", os.devnull, "--rootdir", str(ROOT / "contract_tests"),
        "-p", "no:cacheprovider", "-q", "-rs", "--tb=short", "--report", str(report), "--cassette", str(cassette),
        *args)
    data = json.loads(report.with_name("report.json").read_text())
    return int(result.ret), data, "\n".join(result.outlines[-80:])


def rules(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["id"]: rule for block in report["providers"].values() for rule in block["rules"]}


def failed(report: dict[str, Any]) -> dict[str, str]:
    return {rid: rule["message"] for rid, rule in rules(report).items() if rule["outcome"] in ("fail", "error")}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A cassette of everyday traffic, recorded in process through the proxy: answers with
    links and with base64, several images, a rate limit, a refused value, no key."""
    cassette = tmp_path_factory.mktemp("clean") / "cassette"
    proxy = in_process_proxy(mock_app(), cassette)
    image = sample_data_uri("input-512.png")
    answers = calls(
        proxy,
        ("POST", EDITS, {"json": powertokens_body(n=2), "headers": AUTH}),
        ("POST", EDITS, {"json": powertokens_body(response_format="b64_json", size="1536*1024"), "headers": AUTH}),
        ("POST", EDITS, {"json": powertokens_body(n=9), "headers": AUTH}),
        ("POST", EDITS, {"json": powertokens_body(seed=5), "headers": {**AUTH, "Prefer": "code=429"}}),
        ("POST", EDITS, {"json": powertokens_body(seed=6)}),
        ("POST", GENERATIONS, {"json": {"model": "Qwen/Qwen-Image-Edit", "prompt": "sketch", "image": image, "n": 2,
                                        "response_format": "b64_json"}, "headers": AUTH}),
        ("POST", DASHSCOPE, {"json": {"model": "qwen-image-2.0", "parameters": {"n": 2, "size": "768*512"},
                                      "input": {"messages": [{"role": "user", "content": [
                                          {"image": image}, {"text": "snow"}]}]}}, "headers": AUTH}),
    )
    assert [a.status_code for a in answers] == [200, 200, 400, 429, 401, 200, 200]
    return cassette


def test_a_clean_cassette_passes_offline(pytester, clean):
    code, report, output = run_check(pytester, clean)
    assert code == 0 and not failed(report), output
    outcome = rules(report)
    checked = {rid for rid, rule in outcome.items() if rule["outcome"] == "pass"}
    for expected in ("powertokens::response::schema[doc]", "powertokens::response.data::count[doc]",
                     "powertokens::response.data[].b64_json::image-size[doc]",
                     "powertokens::response.data[].url::image-size[doc]", "powertokens::n::maximum[doc]",
                     "powertokens::auth::missing-token[upstream]", "powertokens::error::catalogued[assumption]",
                     "modelverse::response.data::distinct[doc]", "dashscope::response.usage::size[upstream]"):
        assert expected in checked, (expected, outcome.get(expected))
    assert outcome["powertokens::response.data::count[doc]"]["note"] == "checked on 2 recorded exchange(s)"
    assert "a cassette keeps one download" in outcome["powertokens::response.data[].url::downloads-again[upstream]"][
        "reason"]
    assert report["target"]["cassette"] == str(clean) and report["target"]["live"] is False


def edited_copy(source: Path, folder: Path, edit) -> Path:
    """A copy of a cassette with one exchange file changed by ``edit(exchange) -> bool``."""
    import shutil

    target = folder / "edited"
    shutil.copytree(source, target)
    for path in sorted((target / "exchanges").glob("*.json")):
        exchange = json.loads(path.read_text())
        if edit(exchange):
            path.write_text(json.dumps(exchange, indent=2, sort_keys=True) + "\n")
            return target
    raise AssertionError("no exchange was edited")


def test_an_edited_cassette_fails_the_broken_rule_naming_its_source(pytester, clean, tmp_path):
    def drop_created(exchange: dict[str, Any]) -> bool:
        if exchange["provider"] == "powertokens" and exchange["response"]["status"] == 200:
            del exchange["response"]["body"]["created"]
            return True
        return False

    code, report, output = run_check(pytester, edited_copy(clean, tmp_path / "a", drop_created),
                                     "--provider", "powertokens")
    broken = failed(report)
    assert code == 1 and set(broken) == {"powertokens::response::schema[doc]",
                                         "powertokens::response.created::plausible[doc]"}, output
    assert "recorded exchange 0001-powertokens-200.json: the answer has no created" in broken[
        "powertokens::response.created::plausible[doc]"]
    evidence = rules(report)["powertokens::response.created::plausible[doc]"]["evidence"][0]
    assert evidence["recorded"] == "exchanges/0001-powertokens-200.json"
    assert "Bearer $POWERTOKENS_API_KEY" in evidence["curl"]

    def wrong_size(exchange: dict[str, Any]) -> bool:
        # the request now asks for 1536x1024; the recorded images are 1024x1024
        if exchange["provider"] == "powertokens" and exchange["request"]["body"].get("n") == 2:
            exchange["request"]["body"]["size"] = "1536*1024"
            return True
        return False

    code, report, output = run_check(pytester, edited_copy(clean, tmp_path / "b", wrong_size),
                                     "--provider", "powertokens")
    broken = failed(report)
    assert set(broken) == {"powertokens::response.data[].url::image-size[doc]"}, output
    assert "is 1024x1024, the request asks for 1536x1024: size '1536*1024'" in next(iter(broken.values()))
    markdown = (pytester.path / "report.md").read_text()
    assert "`response.data[].url::image-size` | doc | **FAIL**" in markdown


def drifted(app: Any, change) -> Any:
    """``app`` with every JSON answer of an edit endpoint changed by ``change(status, body)``."""
    async def drift(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        messages = []

        async def keep(message):
            messages.append(message)

        await app(scope, receive, keep)
        start = messages[0]
        body = b"".join(m.get("body", b"") for m in messages[1:])
        body = orjson.dumps(change(start["status"], orjson.loads(body)))
        headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return drift


def test_a_drifted_upstream_is_caught_offline(pytester, tmp_path):
    def drift(status: int, body: dict[str, Any]) -> dict[str, Any]:
        if status == 200:  # `data` renamed, `created` dropped
            return {"images": body["data"], **{k: v for k, v in body.items() if k not in ("data", "created")}}
        return {"message": body["error"]["message"], "code": 400}  # a flat error body

    cassette = tmp_path / "cassette"
    proxy = in_process_proxy(drifted(mock_app(), drift), cassette)
    answers = calls(proxy, ("POST", EDITS, {"json": powertokens_body(n=2), "headers": AUTH}),
                    ("POST", EDITS, {"json": powertokens_body(n=0), "headers": AUTH}))
    assert "images" in answers[0].json() and "data" not in answers[0].json()  # relayed as the upstream sent it
    code, report, output = run_check(pytester, cassette)
    broken = failed(report)
    assert code == 1
    for rule in ("powertokens::response::schema[doc]", "powertokens::response.data::count[doc]",
                 "powertokens::response.created::plausible[doc]", "powertokens::n::minimum[doc]",
                 "powertokens::error::envelope[assumption]"):
        assert rule in broken, (rule, output)
    assert "the answer has no data list" in broken["powertokens::response.data::count[doc]"]
    # each failure says whose rule broke: the document's, upstream's, or our assumption
    by_source = {rule["source"] for rule in rules(report).values() if rule["outcome"] == "fail"}
    assert by_source == {"doc", "upstream", "assumption"}
    assert "| `response::schema` | doc | **FAIL**" in (pytester.path / "report.md").read_text()


def test_a_lost_image_link_is_recorded_as_unavailable_and_fails_the_image_rules(pytester, tmp_path):
    def dead_links(status: int, body: dict[str, Any]) -> dict[str, Any]:
        for item in body.get("data", []):
            if "url" in item:
                item["url"] = "http://upstream.test/files/gone.png?Signature=abc"
        return body

    cassette = tmp_path / "cassette"
    proxy = in_process_proxy(drifted(mock_app(), dead_links), cassette)
    assert call(proxy, "POST", EDITS, json=powertokens_body(), headers=AUTH).status_code == 200
    [exchange] = exchanges(cassette)
    assert exchange["response"]["body"]["data"][0]["url"] == {
        "$image": None, "link": "http://upstream.test/files/gone.png", "unavailable": "the link answered 404"}
    code, report, output = run_check(pytester, cassette)
    assert "not downloaded when it was recorded: the link answered 404" in failed(report)[
        "powertokens::response.data[].url::image-size[doc]"], output


@pytest.mark.parametrize("provider", ["dashscope"])  # its plan is the largest: 14 requests, 3 model families
def test_the_kit_through_the_proxy_leaves_a_cassette_that_holds_its_plan(pytester, tmp_path, provider):
    """The plan workflow: run the kit against a provider through `record`, then
    `check --cassette` on what it left: every planned request is in it, the same verdicts."""
    upstream = LiveServer()
    cassette = tmp_path / "cassette"
    proxy = Recorder(upstream.base_url, cassette, tmp_path / "record.log", "--log-level", "warning")
    try:
        live = subprocess.run([sys.executable, "-m", "mockserver", "check", "--base-url", proxy.base_url,
                               "--provider", provider, "--rps", "0", "--target-kind", "provider", "--quiet-report",
                               "--report", str(tmp_path / "live")], capture_output=True, text=True, timeout=300)
    finally:
        proxy.stop()
        upstream.stop()
    assert live.returncode == 0, live.stdout[-3000:] + live.stderr[-3000:]
    live_report = json.loads((tmp_path / "live.json").read_text())
    code, report, output = run_check(pytester, cassette)
    assert code == 0 and not failed(report), output
    plan = report["providers"][provider]["plan"]["items"]
    assert plan and all(item["sent"] for item in plan), [(i["name"], i.get("reason")) for i in plan]
    assert [item["name"] for item in plan] == [item["name"] for item in live_report["providers"][provider]["plan"]["items"]]
    assert all(outcome == "pass" for item in plan for outcome in item["checks"].values()), plan
    live_passed = {rid for rid, rule in rules(live_report).items() if rule["outcome"] == "pass"}
    offline_passed = {rid for rid, rule in rules(report).items() if rule["outcome"] == "pass"}
    # what a cassette cannot show (a second download, a body over the limit, another path or
    # method, a wrong key) is all the offline run leaves unchecked
    assert {rid.split("::")[-1].split("[")[0] for rid in live_passed - offline_passed} <= {
        "downloads-again", "body_too_large", "not_found", "method_not_allowed", "invalid-key"}


def test_check_cassette_from_the_command_line(clean, tmp_path):
    done = subprocess.run([sys.executable, "-m", "mockserver", "check", "--cassette", str(clean), "--provider",
                           "modelverse", "--quiet-report", "--report", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "the cassette" in done.stdout and "offline" in done.stdout
    both = subprocess.run([sys.executable, "-m", "mockserver", "check", "--cassette", str(clean), "--base-url",
                           "http://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not both" in both.stderr
    missing = subprocess.run([sys.executable, "-m", "mockserver", "check", "--cassette", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no such cassette directory" in missing.stdout + missing.stderr


def test_a_cassette_never_reaches_the_network(clean, monkeypatch, pytester):
    def refuse(*args, **kwargs):
        raise AssertionError("a --cassette run sent a request")

    monkeypatch.setattr(httpx.Client, "send", refuse)
    code, report, output = run_check(pytester, clean)
    assert code == 0, output

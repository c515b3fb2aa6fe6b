"""The contract suite against the mock served on a port (``--base-url``), the
``qwen-image-mock check`` command, the paid-request budget, recording, and the rule that a
real provider without a key gets nothing.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer

from mockserver.providers import PROVIDERS

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-contract-live"
STRICT_REASON = "strict"


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[LiveServer]:
    """The mock on a free port of 127.0.0.1, accepting only KEY."""
    server = LiveServer({"QWEN_MOCK_API_KEYS": KEY})
    yield server
    server.stop()


def run_suite(pytester: pytest.Pytester, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    report = pytester.path / "report"
    result = pytester.runpytest_inprocess(
        str(ROOT / "contract_tests"), "-c", os.devnull, "--rootdir", str(ROOT / "contract_tests"),
        "-p", "no:cacheprovider", "-q", "-rs", "--tb=short", "--report", str(report), *args)
    report_json = report.with_name("report.json")
    data = json.loads(report_json.read_text()) if report_json.is_file() else None
    return int(result.ret), data, "\n".join(result.outlines[-150:])


def outcomes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["id"]: rule for block in report["providers"].values() for rule in block["rules"]}


def test_suite_passes_against_the_mock_on_a_port(pytester: pytest.Pytester, keyed_server: LiveServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for provider in PROVIDERS:
        monkeypatch.setenv(provider.api_key_env, KEY)
    code, report, output = run_suite(pytester, "--base-url", keyed_server.base_url, "--rps", "0",
                                     "--max-requests", "1000")
    assert report is not None, output
    rules = outcomes(report)
    failed = {rid: r.get("message", "")[:300] for rid, r in rules.items() if r["outcome"] != "pass"
              and not (r["outcome"] == "not run" and STRICT_REASON in r.get("reason", ""))}
    assert not failed, f"{failed}\n{output}"
    assert code == 0, output
    assert report["target"]["mock"] is True  # detected: the mock-only rules ran too
    assert set(report["providers"]) == {provider.name for provider in PROVIDERS}
    for provider in PROVIDERS:
        assert rules[f"{provider.name}::determinism::same-request-same-bytes[assumption]"]["outcome"] == "pass"
        invalid_key = [r for rid, r in rules.items() if rid.startswith(f"{provider.name}::auth::invalid-key[")]
        assert [r["outcome"] for r in invalid_key] == ["pass"], provider.name
    conditional = [r for rid, r in rules.items() if "(model=" in rid]
    assert conditional and all(r["outcome"] == "pass" for r in conditional), conditional


def test_paid_requests_are_capped(pytester: pytest.Pytester, keyed_server: LiveServer,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELVERSE_API_KEY", KEY)
    code, report, output = run_suite(pytester, "--base-url", keyed_server.base_url, "--provider", "modelverse",
                                     "--rps", "0", "--max-requests", "2")
    assert report is not None, output
    assert code == 0, output
    assert report["budget"]["paid_sent"] == 2 and report["budget"]["exhausted"], report["budget"]
    not_run = [r for r in outcomes(report).values() if r["outcome"] == "not run" and "budget" in r.get("reason", "")]
    assert not_run, "no check was skipped for the budget"
    assert "paid-request budget spent (--max-requests 2)" in output
    # valid-request checks come first, so they got the budget
    assert outcomes(report)["modelverse::response::status-200[doc]"]["outcome"] == "pass"
    # the plan's order decided what was sent; the report says what was not, and why
    plan = report["providers"]["modelverse"]["plan"]["items"]
    assert [item["sent"] for item in plan] == [True, True] + [False] * (len(plan) - 2), plan
    assert [item["name"] for item in plan[:2]] == ["n-max", "non-square"]
    assert all("budget spent (--max-requests 2)" in item["reason"] for item in plan[2:])
    assert all(set(item["checks"].values()) == {"pass"} for item in plan[:2])
    assert "planned requests, modelverse: 2 of 4 sent" in output and "not sent: all-optional, all-absent" in output
    # a rule checked on planned requests passes, saying that no drawn example was sent
    count = outcomes(report)["modelverse::response.data::count[doc]"]
    assert count["outcome"] == "pass" and "checked on 2 planned request(s)" in count["note"], count


def test_a_real_provider_without_a_key_gets_nothing(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOKENS_API_KEY", raising=False)
    code, report, output = run_suite(pytester, "--base-url", "https://api.provider.invalid",
                                     "--provider", "powertokens")
    assert report is not None, output
    rules = outcomes(report).values()
    assert rules and all(r["outcome"] == "not run" for r in rules), output
    assert any("POWERTOKENS_API_KEY" in r.get("reason", "") for r in rules)
    assert report["budget"] == {} or report["budget"].get("paid_sent", 0) == 0
    assert code == 0, output


def test_check_command_prints_the_report_and_records(tmp_path: Path, keyed_server: LiveServer) -> None:
    env = {**os.environ, "POWERTOKENS_API_KEY": KEY}
    process = subprocess.run(
        [sys.executable, "-m", "mockserver", "check", "--base-url", keyed_server.base_url,
         "--provider", "powertokens", "--rps", "0", "--report", str(tmp_path / "out" / "powertokens.md"),
         "--record", str(tmp_path / "recorded")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    assert "# Conformance report" in process.stdout
    assert "| `n::maximum` | doc | pass |" in process.stdout
    report = json.loads((tmp_path / "out" / "powertokens.json").read_text())
    assert set(report["providers"]) == {"powertokens"}
    assert (tmp_path / "out" / "powertokens.md").is_file()

    fixtures = sorted((tmp_path / "recorded" / "powertokens").rglob("*.json"))
    assert fixtures, "nothing was recorded"
    text = "\n".join(path.read_text() for path in fixtures)
    assert KEY not in text, "a key was recorded"
    assert "iVBORw0KGgo" not in text and "/9j/" not in text, "image bytes were recorded"
    b64 = [json.loads(p.read_text()) for p in fixtures if "b64_json" in p.parent.name]
    assert b64, [p.parent.name for p in fixtures][:20]
    image = b64[0]["response"]["body"]["data"][0]["b64_json"]["<image>"]
    assert set(image) >= {"sha256", "bytes", "width", "height", "format"} and image["format"] == "PNG"
    assert b64[0]["request"]["headers"]["Authorization"] == "Bearer <redacted>"
    # each planned request, with the downloads of its links, under plan/<item>/, named
    planned = {p.parent.name: json.loads(p.read_text()) for p in fixtures if p.parent.parent.name == "plan"}
    names = [item["name"] for item in report["providers"]["powertokens"]["plan"]["items"]]
    assert sorted(planned) == sorted(names)
    posts = [json.loads(p.read_text()) for p in sorted((tmp_path / "recorded" / "powertokens" / "plan" / "n-max")
                                                        .glob("*.json"))]
    assert posts[0]["plan_item"] == "n-max" and posts[0]["request"]["body"]["n"] == 6
    assert len([f for f in posts if f["request"]["method"] == "GET"]) >= 6  # its six links, downloaded


def test_check_command_checks_dashscope_through_its_sdk_base(tmp_path: Path, keyed_server: LiveServer) -> None:
    """``check --provider dashscope`` with the base URL the DashScope SDK is given
    (``.../api/v1``): every rule passes, the per-model ones included."""
    dashscope = next(provider for provider in PROVIDERS if provider.name == "dashscope")
    env = {**os.environ, dashscope.api_key_env: KEY}
    process = subprocess.run(
        [sys.executable, "-m", "mockserver", "check", "--base-url", keyed_server.base_url + dashscope.client_base_path,
         "--provider", "dashscope", "--rps", "0", "--quiet-report", "--report", str(tmp_path / "dashscope")],
        check=False, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    report = json.loads((tmp_path / "dashscope.json").read_text())
    assert set(report["providers"]) == {"dashscope"}
    rules = outcomes(report)
    failed = [rid for rid, r in rules.items() if r["outcome"] != "pass"
              and not (r["outcome"] == "not run" and STRICT_REASON in r.get("reason", ""))]
    assert not failed, failed
    assert rules["dashscope::parameters.n::maximum(model=qwen-image-edit)[upstream]"]["outcome"] == "pass"
    assert rules["dashscope::auth::invalid-key[upstream]"]["outcome"] == "pass"


def test_strict_rules_hold_on_the_mock_in_strict_mode(pytester: pytest.Pytester) -> None:
    code, report, output = run_suite(pytester, "--strict-mode", "--examples", "2")
    assert report is not None, output
    rules = outcomes(report)
    strict = [r for r in rules.values() if "(strict)" in r["keyword"] or r["keyword"] == "strict-schema"]
    assert strict and all(r["outcome"] == "pass" for r in strict), [(r["id"], r["outcome"]) for r in strict]
    assert code == 0, output


def test_frozen_clock(pytester: pytest.Pytester) -> None:
    code, report, output = run_suite(pytester, "--frozen-time", "1700000000", "-k", "created", "--examples", "3")
    assert report is not None, output
    assert [r["outcome"] for r in outcomes(report).values()] == ["pass", "pass"], output
    assert code == 0

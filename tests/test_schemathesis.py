"""Schemathesis against the mock's own /openapi.json: with the hooks module
(``mockserver.testing.schemathesis_hooks``) every check passes and nothing answers 5xx.

The run is the command docs/openapi-tools.md shows, against a mock with a key configured
(so that ``ignored_auth`` has something to check), derandomised and bounded: a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import ROOT, load_fixture, make_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("schemathesis", reason="schemathesis is in the test extra: pip install -e '.[test]'")

from mockserver.core.schemas import load_schema  # noqa: E402
from mockserver.http import openapi as openapi_module  # noqa: E402
from mockserver.testing import schemathesis_hooks as hooks  # noqa: E402

KEY = "schemathesis-key"
HOOKS = "mockserver.testing.schemathesis_hooks"
MAX_EXAMPLES = 25
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle"}


def schemathesis_env() -> dict[str, str]:
    """The environment without proxies (everything stays on 127.0.0.1) and with the hooks."""
    env = {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["SCHEMATHESIS_HOOKS"] = HOOKS
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def interactions(ndjson: Path) -> list[tuple[str, str, str, int | None]]:
    """Every request Schemathesis recorded (its NDJSON report): method, host:port, path, status."""
    found = []
    for line in ndjson.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if event is None:
            continue
        for interaction in (event.get("recorder") or {}).get("interactions", {}).values():
            request, response = interaction["request"], interaction.get("response")
            uri = urlsplit(request["uri"])
            found.append((request["method"], uri.netloc, uri.path, response and response["status_code"]))
    return found


def test_schemathesis_all_checks_pass(start_server, tmp_path):
    server = start_server({"QWEN_MOCK_API_KEYS": KEY})
    assert server.base_url.startswith("http://127.0.0.1:")
    reports = tmp_path / "reports"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.base_url}/openapi.json",
        "--checks", "all",
        "-H", f"Authorization: Bearer {KEY}",
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers", "1",
        "--request-timeout", "30",
        "--no-color",
        "--report", "ndjson", "--report-dir", str(reports),
    ]
    # Run in a scratch folder: Schemathesis keeps state (.schemathesis/, .hypothesis/) in the cwd.
    run = subprocess.run(command, cwd=tmp_path, env=schemathesis_env(), capture_output=True, text=True, timeout=300)
    output = run.stdout[-20000:] + run.stderr[-5000:]

    # Exit code 0: no check failed (not_a_server_error among them) and nothing errored.
    assert run.returncode == 0, output
    (events,) = reports.glob("*.ndjson")
    sent = interactions(events)
    assert {netloc for _, netloc, _, _ in sent} == {f"127.0.0.1:{server.port}"}
    # Every recorded response is checked for a 5xx as well, so that none can hide.
    assert [i for i in sent if i[3] is None or i[3] >= 500] == []
    # The hooks make schema-valid edits get through: both providers answered 200 many times.
    for path in ("/v1/images/edits", "/v1/images/generations"):
        assert sum(1 for m, _, p, status in sent if (m, p, status) == ("POST", path, 200)) >= MAX_EXAMPLES, path


# ------------------------------------------------------- the document and the strategies


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    with make_client() as client:
        return client.get("/openapi.json").json()


def test_formats_mark_the_rule_nodes_and_only_in_the_document(document):
    """The nodes carrying x-image / x-size get a format (their x- keyword kept); the schema
    files the mock validates with get none, so its validation is unchanged."""
    assert (hooks.IMAGE_FORMAT, hooks.SIZE_FORMAT) == (openapi_module.IMAGE_FORMAT, openapi_module.SIZE_FORMAT)
    components = document["components"]["schemas"]
    marked = {
        "powertokens size": components["PowertokensRequest"]["properties"]["size"],
        "powertokens image": components["PowertokensRequest"]["$defs"]["image"],
        "modelverse image": components["ModelverseRequest"]["properties"]["image"],
    }
    files = {
        "powertokens size": load_schema("powertokens", "request")["properties"]["size"],
        "powertokens image": load_schema("powertokens", "request")["$defs"]["image"],
        "modelverse image": load_schema("modelverse", "request")["properties"]["image"],
    }
    for name, node in marked.items():
        expected = hooks.SIZE_FORMAT if "size" in name else hooks.IMAGE_FORMAT
        assert node["format"] == expected, name
        assert "format" not in files[name], name
        assert {k: v for k, v in node.items() if k != "format"} == files[name], name
    # Every rule node of every provider's request schema is marked.
    from mockserver.core.schemas import objects_in
    from mockserver.providers import PROVIDERS

    for keyword, format_name in (("x-image", hooks.IMAGE_FORMAT), ("x-size", hooks.SIZE_FORMAT)):
        in_files = sum(isinstance(node.get(keyword), dict)
                       for p in PROVIDERS for node in objects_in(load_schema(p.name, "request")))
        assert len(list(hooks.rules_in(document, keyword, format_name))) == in_files > 0


def test_size_strategy_reads_the_range_from_the_rules():
    rules = [{"separators": ["x"], "minPixels": 10, "maxPixels": 12}]

    @given(hooks.sizes(rules))
    def check(size: str) -> None:
        width, height = map(int, size.split("x"))
        assert 10 <= width * height <= 12

    check()
    assert hooks.sizes([{"separators": ["*"], "minPixels": 5, "maxPixels": 4}]).is_empty


@pytest.fixture(scope="module")
def strategies(document) -> dict[str, st.SearchStrategy[str]]:
    return {
        "image": hooks.image_references(list(hooks.rules_in(document, "x-image", hooks.IMAGE_FORMAT))),
        "size": hooks.sizes(list(hooks.rules_in(document, "x-size", hooks.SIZE_FORMAT))),
    }


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_drawn_values_are_accepted_by_the_mock(strategies, data):
    """What the hooks draw, the mock accepts: in a powertokens request (size and up to three
    images) and in a modelverse one (the image)."""
    images = data.draw(st.lists(strategies["image"], min_size=1, max_size=3), label="images")
    size = data.draw(strategies["size"], label="size")
    powertokens = load_fixture("seed/powertokens-request.json")
    powertokens["input"]["messages"][0]["content"] = [*({"image": image} for image in images), {"text": "Make it snow"}]
    powertokens.update(size=size, n=1, response_format="url")
    modelverse = {**load_fixture("seed/modelverse-request.json"), "image": images[0], "response_format": "url"}
    with make_client() as client:
        for path, body in (("/v1/images/edits", powertokens), ("/v1/images/generations", modelverse)):
            response = client.post(path, json=body)
            assert response.status_code == 200, (path, response.text, [i[:60] for i in images], size)

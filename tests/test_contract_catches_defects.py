"""The contract suite must fail on a broken server, and say which rule broke.

Each defect below wraps the real mock (``create_app``) in a small ASGI middleware that
breaks one promise: accepting an out-of-range value, one image too few, images of the
wrong size, corrupt base64, a missing field, a flat error body, a 500 for bad input,
ignoring credentials, a dead image link, no request id, a wrong error code, images that
change from one call to the next; and, for DashScope's native API, images split across
several choices, one model's own limits (qwen-image-edit's n = 1, edit-plus's side range)
ignored, and a usage block that misreports the images' size. The whole suite runs against each (``--asgi-app``, so
the defect stays in process and nothing listens on a port) with one example per rule (the
simplest request, which Hypothesis always tries first), and each run must fail with the
defect's rules among the failures, while the same rules pass on the mock without defects.

The runs are made in process with pytester (no interpreter start-up per run), each the
first time a test needs it, and kept for the module.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mockserver import Settings, create_app
from mockserver.providers import PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = "1"

Scope = dict[str, Any]
Message = dict[str, Any]


class Rewrite:
    """ASGI middleware that can rewrite a request (headers, body) and a response (status,
    headers, body), buffering both. Used only by the defects below."""

    def __init__(self, app: Any, request: Callable | None = None, response: Callable | None = None) -> None:
        self.app, self.request, self.response = app, request, response

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = list(scope["headers"])
        if self.request:
            headers, body = self.request(scope, headers, body)
        scope = {**scope, "headers": [(k, v) for k, v in headers if k != b"content-length"]
                 + [(b"content-length", str(len(body)).encode())]}
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        start: Message = {}
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    status, out_headers = start["status"], list(start.get("headers", []))
                    out_body = b"".join(parts)
                    if self.response:
                        status, out_headers, out_body = self.response(scope, status, out_headers, out_body)
                    out_headers = [(k, v) for k, v in out_headers if k.lower() != b"content-length"]
                    out_headers.append((b"content-length", str(len(out_body)).encode()))
                    await send({"type": "http.response.start", "status": status, "headers": out_headers})
                    await send({"type": "http.response.body", "body": out_body})

        await self.app(scope, replay, capture)


def json_of(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def on_success(edit: Callable[[dict[str, Any]], None]) -> Callable:
    """A response rewrite applied to 200 JSON answers of the edit routes."""
    def rewrite(scope: Scope, status: int, headers: list, body: bytes):
        data = json_of(body)
        if status == 200 and isinstance(data, dict) and "data" in data:
            edit(data)
            body = json.dumps(data).encode()
        return status, headers, body
    return rewrite


def png_of_size(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# --------------------------------------------------------------------------- the defects


def accepts_out_of_range(settings: Settings) -> Any:
    """powertokens takes n above its maximum (quietly clamping it)."""
    def request(scope, headers, body):
        data = json_of(body)
        if scope["path"] == "/v1/images/edits" and isinstance(data, dict) and isinstance(data.get("n"), int) \
                and not isinstance(data["n"], bool) and data["n"] > 6:
            data["n"] = 6
            body = json.dumps(data).encode()
        return headers, body
    return Rewrite(create_app(settings), request=request)


def one_image_too_few(settings: Settings) -> Any:
    """One image fewer than asked for (none at all when one is asked for)."""
    def edit(data):
        data["data"] = data["data"][:-1]
    return Rewrite(create_app(settings), response=on_success(edit))


def wrong_image_size(settings: Settings) -> Any:
    def edit(data):
        for item in data["data"]:
            if "b64_json" in item:
                item["b64_json"] = png_of_size(64, 64)
    return Rewrite(create_app(settings), response=on_success(edit))


def corrupt_base64(settings: Settings) -> Any:
    def edit(data):
        for item in data["data"]:
            if "b64_json" in item:
                item["b64_json"] = item["b64_json"][:-8] + "!!not-b64"
    return Rewrite(create_app(settings), response=on_success(edit))


def missing_created(settings: Settings) -> Any:
    return Rewrite(create_app(settings), response=on_success(lambda data: data.pop("created", None)))


def flat_error_body(settings: Settings) -> Any:
    def rewrite(scope, status, headers, body):
        data = json_of(body)
        if status >= 400 and isinstance(data, dict) and isinstance(data.get("error"), dict):
            body = json.dumps({"message": data["error"].get("message"), "code": data["error"].get("code")}).encode()
        return status, headers, body
    return Rewrite(create_app(settings), response=rewrite)


def server_error_for_bad_input(settings: Settings) -> Any:
    def rewrite(scope, status, headers, body):
        if status == 400:
            status = 500
        return status, headers, body
    return Rewrite(create_app(settings), response=rewrite)


def ignores_auth(settings: Settings) -> Any:
    key = next(iter(settings.api_keys))

    def request(scope, headers, body):
        headers = [(k, v) for k, v in headers if k != b"authorization"] + [(b"authorization", f"Bearer {key}".encode())]
        return headers, body
    return Rewrite(create_app(settings), request=request)


def dead_image_url(settings: Settings) -> Any:
    def edit(data):
        for item in data["data"]:
            if "url" in item:
                item["url"] = item["url"].rsplit("/", 1)[0] + "/expired-or-missing.png"
    return Rewrite(create_app(settings), response=on_success(edit))


def no_request_id(settings: Settings) -> Any:
    def rewrite(scope, status, headers, body):
        return status, [(k, v) for k, v in headers if k.lower() != b"x-request-id"], body
    return Rewrite(create_app(settings), response=rewrite)


def wrong_error_code(settings: Settings) -> Any:
    def rewrite(scope, status, headers, body):
        data = json_of(body)
        if status == 400 and isinstance(data, dict) and isinstance(data.get("error"), dict):
            data["error"]["code"] = "BadRequest"
            body = json.dumps(data).encode()
        return status, headers, body
    return Rewrite(create_app(settings), response=rewrite)


def changing_images(settings: Settings) -> Any:
    """Each answer's images differ a little (a counter in a PNG text chunk)."""
    counter = iter(range(10**9))

    def tag(png: bytes) -> bytes:
        image = Image.open(io.BytesIO(png))
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("call", str(next(counter)))
        out = io.BytesIO()
        image.save(out, "PNG", pnginfo=info)
        return out.getvalue()

    def rewrite(scope, status, headers, body):
        data = json_of(body)
        if status == 200 and isinstance(data, dict) and isinstance(data.get("data"), list):
            for item in data["data"]:
                if "b64_json" in item:
                    prefix, _, payload = item["b64_json"].rpartition("base64,")
                    item["b64_json"] = prefix + ("base64," if prefix else "") + base64.b64encode(
                        tag(base64.b64decode(payload))).decode()
            body = json.dumps(data).encode()
        elif status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n":
            body = tag(body)
        return status, headers, body
    return Rewrite(create_app(settings), response=rewrite)


DASHSCOPE = next(provider.path for provider in PROVIDERS if provider.name == "dashscope")


def on_dashscope_request(edit: Callable[[dict[str, Any]], bool]) -> Callable:
    """A request rewrite applied to JSON bodies sent to DashScope's endpoint (``edit`` returns
    whether it changed the body)."""
    def request(scope, headers, body):
        data = json_of(body)
        if scope["path"] == DASHSCOPE and isinstance(data, dict) and isinstance(data.get("parameters"), dict) \
                and edit(data):
            body = json.dumps(data).encode()
        return headers, body
    return request


def on_dashscope_success(edit: Callable[[dict[str, Any]], None]) -> Callable:
    def rewrite(scope: Scope, status: int, headers: list, body: bytes):
        data = json_of(body)
        if scope["path"] == DASHSCOPE and status == 200 and isinstance(data, dict) and "output" in data:
            edit(data)
            body = json.dumps(data).encode()
        return status, headers, body
    return rewrite


def split_choices(settings: Settings) -> Any:
    """DashScope's n images come back one per choice instead of all in one."""
    def edit(data):
        choice = data["output"]["choices"][0]
        data["output"]["choices"] = [
            {**choice, "message": {**choice["message"], "content": [item]}} for item in choice["message"]["content"]]
    return Rewrite(create_app(settings), response=on_dashscope_success(edit))


def ignores_n_limit(settings: Settings) -> Any:
    """qwen-image-edit's own limit (n = 1) ignored: n = 2 is accepted (and quietly clamped)."""
    def edit(data):
        n = data["parameters"].get("n")
        if data.get("model") == "qwen-image-edit" and isinstance(n, int) and not isinstance(n, bool) and n > 1:
            data["parameters"]["n"] = 1
            return True
        return False
    return Rewrite(create_app(settings), request=on_dashscope_request(edit))


def ignores_side_limit(settings: Settings) -> Any:
    """edit-plus / edit-max take a size with a side under 512 px (quietly enlarged)."""
    def edit(data):
        size = data["parameters"].get("size")
        if data.get("model") in ("qwen-image-edit-plus", "qwen-image-edit-max") and isinstance(size, str) \
                and "*" in size:
            sides = size.split("*")
            if all(s.isdigit() for s in sides) and min(int(s) for s in sides) < 512:
                data["parameters"]["size"] = "*".join(str(max(int(s), 512)) for s in sides)
                return True
        return False
    return Rewrite(create_app(settings), request=on_dashscope_request(edit))


def wrong_usage(settings: Settings) -> Any:
    """DashScope's usage reports 1024x1024 whatever the images' size."""
    def edit(data):
        data["usage"].update(width=1024, height=1024)
    return Rewrite(create_app(settings), response=on_dashscope_success(edit))


def no_defect(settings: Settings) -> Any:
    """The mock as it is: the baseline every defect's rules must pass on."""
    return create_app(settings)


# defect -> (provider to run, rules that must be among the failures)
DEFECTS: dict[str, tuple[str, list[str]]] = {
    "accepts_out_of_range": ("powertokens", ["powertokens::n::maximum[doc]"]),
    "one_image_too_few": ("powertokens", ["powertokens::response.data::count[doc]"]),
    "wrong_image_size": ("powertokens", ["powertokens::response.data[].b64_json::image-size[doc]"]),
    "corrupt_base64": ("modelverse", ["modelverse::response.data[].b64_json::image-size[assumption]",
                                      "modelverse::response.data[]::png[upstream]"]),
    "missing_created": ("modelverse", ["modelverse::response::schema[doc]",
                                       "modelverse::response.created::plausible[doc]"]),
    "flat_error_body": ("modelverse", ["modelverse::n::maximum[doc]", "modelverse::auth::missing-token[doc]"]),
    "server_error_for_bad_input": ("powertokens", ["powertokens::seed::minimum[doc]",
                                                   "powertokens::size::x-size.maxPixels[upstream]"]),
    "ignores_auth": ("powertokens", ["powertokens::auth::missing-token[upstream]",
                                     "powertokens::auth::invalid-key[upstream]"]),
    "dead_image_url": ("powertokens", ["powertokens::response.data[].url::image-size[doc]"]),
    "no_request_id": ("modelverse", ["modelverse::response::x-request-id[assumption]",
                                     "modelverse::error::x-request-id[assumption]"]),
    "wrong_error_code": ("modelverse", ["modelverse::error::invalid_parameter[doc]"]),
    "changing_images": ("modelverse", ["modelverse::determinism::same-request-same-bytes[assumption]"]),
    "split_choices": ("dashscope", ["dashscope::response.output.choices[0].message.content::count-several[upstream]"]),
    "ignores_n_limit": ("dashscope", ["dashscope::parameters.n::maximum(model=qwen-image-edit)[upstream]"]),
    "ignores_side_limit": ("dashscope", [
        "dashscope::parameters.size::x-size.minSide(model=qwen-image-edit-max,qwen-image-edit-plus)[upstream]"]),
    "wrong_usage": ("dashscope", ["dashscope::response.usage::size[upstream]"]),
}


pytest_plugins = ("pytester",)


class DefectRuns:
    """Runs of the suite, one per defect (and a baseline per provider), made in process
    with pytester and kept for the module's tests."""

    def __init__(self, pytester: pytest.Pytester | None = None) -> None:
        self.pytester = pytester
        self.results: dict[str, dict[str, Any]] = {}

    def get(self, key: str, pytester: pytest.Pytester) -> dict[str, Any]:
        if key not in self.results:
            defect, provider = ("no_defect", key.split(":")[1]) if key.startswith("baseline:") else (key, DEFECTS[key][0])
            self.results[key] = run_suite(pytester, defect, provider)
        return self.results[key]


def run_suite(pytester: pytest.Pytester, defect: str, provider: str) -> dict[str, Any]:
    report = pytester.path / f"{defect}-{provider}" / "report"
    started = time.monotonic()
    result = pytester.runpytest_inprocess(
        str(ROOT / "contract_tests"), "-c", os.devnull, "--rootdir", str(ROOT / "contract_tests"),
        "-p", "no:cacheprovider", "-q", "--tb=line",
        "--asgi-app", f"{__name__}:{defect}", "--provider", provider, "--examples", EXAMPLES,
        "--report", str(report),
    )
    output = "\n".join(result.outlines[-200:] + result.errlines[-50:])
    report_json = report.with_name(report.name + ".json")
    return {"exit": int(result.ret), "output": output, "seconds": round(time.monotonic() - started, 1),
            "report": json.loads(report_json.read_text()) if report_json.is_file() else None}


@pytest.fixture(scope="module")
def runs() -> DefectRuns:
    return DefectRuns()


@pytest.fixture
def defect_runs(runs: DefectRuns, pytester: pytest.Pytester):
    class View:
        def __getitem__(self, key: str) -> dict[str, Any]:
            return runs.get(key, pytester)
    return View()


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {rule["id"]: rule["outcome"] for block in report["providers"].values() for rule in block["rules"]}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_suite_fails_naming_the_broken_rule(defect: str, defect_runs: dict[str, Any]) -> None:
    run = defect_runs[defect]
    provider, broken = DEFECTS[defect]
    assert run["report"] is not None, f"no report was written:\n{run['output']}"
    assert run["exit"] == 1, f"the suite did not fail (exit {run['exit']}):\n{run['output']}"
    results = outcomes(run["report"])
    for rule in broken:
        assert results.get(rule) == "fail", (
            f"{defect}: {rule} should fail, it is {results.get(rule)!r}:\n{run['output']}")
    # the failure names the rule in pytest's own output too
    assert any(rule in run["output"] for rule in broken), run["output"]
    # and the same rules hold on the mock without the defect: the defect is what broke them
    baseline = defect_runs[f"baseline:{provider}"]
    assert baseline["report"] is not None, baseline["output"]
    base = outcomes(baseline["report"])
    for rule in broken:
        assert base.get(rule) == "pass", (
            f"{rule} is {base.get(rule)!r} on the mock without any defect (a bug in the mock?):\n{baseline['output']}")


def test_failures_carry_evidence(defect_runs: dict[str, Any]) -> None:
    """A failure in the report shows the request (no key, no image bytes), the status and
    body received, the request id and a curl command."""
    run = defect_runs["accepts_out_of_range"]
    entry = next(rule for block in run["report"]["providers"].values() for rule in block["rules"]
                 if rule["id"] == "powertokens::n::maximum[doc]")
    assert entry["source"] == "doc" and "documented contract" in entry["meaning"]
    evidence = entry["evidence"][-1]
    assert evidence["status"] == 200
    assert evidence["request"]["body"]["n"] > 6
    assert evidence["request"]["headers"]["Authorization"] == "Bearer <redacted>"
    assert evidence["request_id"]
    assert evidence["curl"].startswith("# the target ran in process") and "curl -sS -i -X POST" in evidence["curl"]
    text = json.dumps(run["report"])
    assert "contract-test-key" not in text.replace("--api-keys contract-test-key", "").replace(
        "Bearer contract-test-key", "")
    assert "iVBORw0KGgo" not in text and "/9j/" not in text  # base64 of a PNG / JPEG header


def test_a_conditional_failure_shows_its_condition_held(defect_runs: dict[str, Any]) -> None:
    """The request that broke qwen-image-edit's own n limit kept its model: the evidence
    shows model qwen-image-edit with n above 1, accepted."""
    run = defect_runs["ignores_n_limit"]
    entry = next(rule for block in run["report"]["providers"].values() for rule in block["rules"]
                 if rule["id"] == "dashscope::parameters.n::maximum(model=qwen-image-edit)[upstream]")
    evidence = entry["evidence"][-1]
    assert evidence["status"] == 200
    body = evidence["request"]["body"]
    assert body["model"] == "qwen-image-edit" and body["parameters"]["n"] > 1

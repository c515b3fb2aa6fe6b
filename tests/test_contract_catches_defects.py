"""The contract suite must fail on a broken server, and say which rule broke.

Each defect below wraps the real mock (``create_app``) in a small ASGI middleware that
breaks one promise: accepting an out-of-range value, one image too few, images of the
wrong size, corrupt base64, a missing field, a flat error body, a 500 for bad input,
ignoring credentials, a dead image link, no request id, a wrong error code, images that
change from one call to the next; and, for DashScope's native API, images split across
several choices, one model's own limits (qwen-image-edit's n = 1, edit-plus's side range)
ignored, and a usage block that misreports the images' size. The whole suite runs against
each (``--asgi-app``, so the defect stays in process and nothing listens on a port) with
one example per rule (the simplest request, which Hypothesis always tries first), and each
run must fail with the defect's rules among the failures, while the same rules pass on the
mock without defects.

``LIVE_DEFECTS`` are drifts a provider could plausibly make that only show off the minimal
path: one image fewer only when several are asked for, the right count of repeated
images, the wrong size only for a non-square request, base64 in the other form than
documented (both ways), no ``revised_prompt`` when prompt rewriting is asked for by name,
links that work for one download, an error ``param`` naming the wrong field, the upper
size bound or the third input image refused, one model family ignoring ``n``. Each is
served on a port of 127.0.0.1 (uvicorn in a thread) and the suite runs against it as
against a real provider (``--base-url``, ``--target-kind provider``), with the default
``--max-requests``: one drawn example per paid rule, so what catches these is the plan of
boundary requests (``contract_tests/plan.py``); each failure must name the planned
request it failed on. The baseline for them is the same live run against the mock.

The runs are made in process with pytester (no interpreter start-up per run), each the
first time a test needs it, and kept for the module.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from contract_tests.session import IN_PROCESS_KEY
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


# --------------------------------------------------------------------------- drift off the minimal path


POWERTOKENS = next(provider.path for provider in PROVIDERS if provider.name == "powertokens")


def on_request(path: str, remember: Callable[[Scope, dict[str, Any]], None]) -> Callable:
    """A request hook that keeps what the response hook needs to know of the request (in
    the scope the response hook sees)."""
    def request(scope, headers, body):
        data = json_of(body)
        if scope["path"] == path and isinstance(data, dict):
            remember(scope, data)
        return headers, body
    return request


def fewer_images_when_several(settings: Settings) -> Any:
    """powertokens: asked for several images, one fewer comes back (one image is fine)."""
    def edit(data):
        if len(data["data"]) > 1:
            data["data"] = data["data"][:-1]
    return Rewrite(create_app(settings), response=on_success(edit))


def repeated_images(settings: Settings) -> Any:
    """DashScope: asked for several images, the right number of items, all the first image."""
    def edit(data):
        content = data["output"]["choices"][0]["message"]["content"]
        data["output"]["choices"][0]["message"]["content"] = [dict(content[0]) for _ in content]
    return Rewrite(create_app(settings), response=on_dashscope_success(edit))


def swapped_size_when_not_square(settings: Settings) -> Any:
    """powertokens reads size as H*W: right for a square, wrong for any other."""
    def request(scope, headers, body):
        data = json_of(body)
        if scope["path"] == POWERTOKENS and isinstance(data, dict) and isinstance(data.get("size"), str):
            match = re.fullmatch(r"([0-9]+)([*x])([0-9]+)", data["size"])
            if match and match.group(1) != match.group(3):
                data["size"] = match.group(3) + match.group(2) + match.group(1)
                body = json.dumps(data).encode()
        return headers, body
    return Rewrite(create_app(settings), request=request)


def b64_as_data_uri(settings: Settings) -> Any:
    """powertokens' b64_json comes as a data URI, where plain base64 is what it gives."""
    def edit(data):
        for item in data["data"]:
            if "b64_json" in item and not item["b64_json"].startswith("data:"):
                item["b64_json"] = "data:image/png;base64," + item["b64_json"]
    return Rewrite(create_app(settings), response=on_success(edit))


def b64_as_plain(settings: Settings) -> Any:
    """modelverse's b64_json comes as bare base64, where its document shows a data URI."""
    def edit(data):
        for item in data["data"]:
            if "b64_json" in item:
                item["b64_json"] = item["b64_json"].rpartition("base64,")[2]
    return Rewrite(create_app(settings), response=on_success(edit))


def no_revised_prompt_when_asked(settings: Settings) -> Any:
    """powertokens drops revised_prompt when prompt_extend is sent as true (its default,
    left out, still gets it)."""
    def remember(scope, data):
        scope["defect.prompt_extend"] = data.get("prompt_extend")

    def rewrite(scope, status, headers, body):
        data = json_of(body)
        if scope.get("defect.prompt_extend") is True and status == 200 and isinstance(data, dict):
            for item in data.get("data", []):
                item.pop("revised_prompt", None)
            body = json.dumps(data).encode()
        return status, headers, body
    return Rewrite(create_app(settings), request=on_request(POWERTOKENS, remember), response=rewrite)


def links_work_once(settings: Settings) -> Any:
    """Image links answer the first download only, then 404 (a one-time token)."""
    fetched: set[str] = set()

    def rewrite(scope, status, headers, body):
        if scope["path"].startswith("/files/") and status == 200:
            if scope["path"] in fetched:
                status, body = 404, json.dumps({"error": {"message": "gone", "type": "not_found",
                                                          "param": None, "code": "not_found"}}).encode()
                headers = [(b"content-type", b"application/json")]
            fetched.add(scope["path"])
        return status, headers, body
    return Rewrite(create_app(settings), response=rewrite)


def param_names_the_list(settings: Settings) -> Any:
    """powertokens' error.param names the content list for a bad text or image in it
    (``input.messages[0].content``, not ``input.messages[0].content[1].text``); every other
    field is named right."""
    def rewrite(scope, status, headers, body):
        data = json_of(body)
        if status == 400 and isinstance(data, dict) and isinstance(data.get("error"), dict) \
                and isinstance(data["error"].get("param"), str):
            data["error"]["param"] = re.sub(r"(\.content)\[[0-9]+\]\..*$", r"\1", data["error"]["param"])
            body = json.dumps(data).encode()
        return status, headers, body
    return Rewrite(create_app(settings), response=rewrite)


def dashscope_refusal(message: str) -> bytes:
    return json.dumps({"request_id": "defect", "code": "InvalidParameter", "message": message}).encode()


def refuses_largest_size(settings: Settings) -> Any:
    """DashScope takes at most 2048*1536 pixels now (the documented bound is 2048*2048)."""
    def remember(scope, data):
        size = data.get("parameters", {}).get("size") if isinstance(data.get("parameters"), dict) else None
        match = re.fullmatch(r"([0-9]+)\*([0-9]+)", size) if isinstance(size, str) else None
        scope["defect.pixels"] = int(match.group(1)) * int(match.group(2)) if match else 0

    def rewrite(scope, status, headers, body):
        if status == 200 and scope.get("defect.pixels", 0) > 2048 * 1536:
            return 400, [(b"content-type", b"application/json")], dashscope_refusal(
                "parameters.size: at most 3145728 pixels")
        return status, headers, body
    return Rewrite(create_app(settings), request=on_request(DASHSCOPE, remember), response=rewrite)


def refuses_third_image(settings: Settings) -> Any:
    """DashScope takes two input images now (the documented most is three)."""
    def remember(scope, data):
        try:
            content = data["input"]["messages"][0]["content"]
            scope["defect.images"] = sum(1 for item in content if isinstance(item, dict) and "image" in item)
        except (KeyError, IndexError, TypeError):
            scope["defect.images"] = 0

    def rewrite(scope, status, headers, body):
        if status == 200 and scope.get("defect.images", 0) > 2:
            return 400, [(b"content-type", b"application/json")], dashscope_refusal(
                "input.messages[0].content: at most 2 images")
        return status, headers, body
    return Rewrite(create_app(settings), request=on_request(DASHSCOPE, remember), response=rewrite)


def edit_family_ignores_n(settings: Settings) -> Any:
    """qwen-image-edit-max / -plus make one image whatever valid n asks (the 2.0 models are
    fine; an n out of range is still refused)."""
    def edit(data):
        n = data["parameters"].get("n")
        if data.get("model") in ("qwen-image-edit-max", "qwen-image-edit-plus") and isinstance(n, int) \
                and not isinstance(n, bool) and 1 < n <= 6:
            data["parameters"]["n"] = 1
            return True
        return False
    return Rewrite(create_app(settings), request=on_dashscope_request(edit))


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


# defect -> (provider, rules that must be among the failures, planned requests a failure
# must name: the plan is what catches these; empty where the rule has explicit examples
# of its own)
LIVE_DEFECTS: dict[str, tuple[str, list[str], list[str]]] = {
    "fewer_images_when_several": ("powertokens", ["powertokens::response.data::count[doc]",
                                                  "powertokens::response.data::count-several[doc]"], ["n-max"]),
    "repeated_images": ("dashscope", ["dashscope::response.output.choices[0].message.content::distinct[upstream]"],
                        ["n-max(model=qwen-image-2.0-pro,qwen-image-2.0)"]),
    "swapped_size_when_not_square": ("powertokens", ["powertokens::response.data[].b64_json::image-size[doc]",
                                                     "powertokens::response.data[].url::image-size[doc]"],
                                     ["non-square", "all-optional"]),
    "b64_as_data_uri": ("powertokens", ["powertokens::response.data[].b64_json::b64-form[assumption]"],
                        ["non-square"]),
    "b64_as_plain": ("modelverse", ["modelverse::response.data[].b64_json::b64-form[doc]"], ["non-square"]),
    "no_revised_prompt_when_asked": ("powertokens", ["powertokens::response.data[].revised_prompt::present[doc]"],
                                     ["all-optional"]),
    "links_work_once": ("modelverse", ["modelverse::response.data[].url::downloads-again[doc]"], ["n-max"]),
    "param_names_the_list": ("powertokens", ["powertokens::error.param::field-path[assumption]"], []),
    "refuses_largest_size": ("dashscope", ["dashscope::response::status-200[upstream]"],
                             ["size-max(model=qwen-image-2.0-pro,qwen-image-2.0)"]),
    "refuses_third_image": ("dashscope", ["dashscope::response::status-200[upstream]"],
                            ["images-max(model=qwen-image-2.0-pro,qwen-image-2.0)"]),
    "edit_family_ignores_n": ("dashscope", ["dashscope::response.output.choices[0].message.content::count[upstream]"],
                              ["n-max(model=qwen-image-edit-max,qwen-image-edit-plus)"]),
}


pytest_plugins = ("pytester",)


class AppServer:
    """An ASGI app on uvicorn in a thread of this process, on a free port of 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the defect's server did not start"
            time.sleep(0.005)  # polling for readiness, not waiting a fixed time

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def live_settings() -> Settings:
    """The key the suite sends a server on 127.0.0.1 when no key is in the environment."""
    return Settings(api_keys=frozenset({IN_PROCESS_KEY}))


class DefectRuns:
    """Runs of the suite, one per defect (and a baseline per provider, in process and
    live), made in process with pytester and kept for the module's tests."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self.baseline_server: AppServer | None = None

    def get(self, key: str, pytester: pytest.Pytester) -> dict[str, Any]:
        if key not in self.results:
            if key.startswith("baseline:"):
                self.results[key] = run_suite(pytester, "no_defect", key.split(":")[1])
            elif key.startswith("live-baseline:"):
                if self.baseline_server is None:
                    self.baseline_server = AppServer(no_defect(live_settings()))
                self.results[key] = run_live(pytester, "no_defect", key.split(":")[1], self.baseline_server)
            elif key in LIVE_DEFECTS:
                server = AppServer(globals()[key](live_settings()))
                try:
                    self.results[key] = run_live(pytester, key, LIVE_DEFECTS[key][0], server)
                finally:
                    server.stop()
            else:
                self.results[key] = run_suite(pytester, key, DEFECTS[key][0])
        return self.results[key]

    def close(self) -> None:
        if self.baseline_server is not None:
            self.baseline_server.stop()


def collect(pytester: pytest.Pytester, name: str, *args: str) -> dict[str, Any]:
    report = pytester.path / name / "report"
    started = time.monotonic()
    result = pytester.runpytest_inprocess(
        str(ROOT / "contract_tests"), "-c", os.devnull, "--rootdir", str(ROOT / "contract_tests"),
        "-p", "no:cacheprovider", "-q", "--tb=line", "--report", str(report), *args)
    output = "\n".join(result.outlines[-200:] + result.errlines[-50:])
    report_json = report.with_name(report.name + ".json")
    return {"exit": int(result.ret), "output": output, "seconds": round(time.monotonic() - started, 1),
            "report": json.loads(report_json.read_text()) if report_json.is_file() else None}


def run_suite(pytester: pytest.Pytester, defect: str, provider: str) -> dict[str, Any]:
    """In process, one example per rule."""
    return collect(pytester, f"{defect}-{provider}", "--asgi-app", f"{__name__}:{defect}", "--provider", provider,
                   "--examples", EXAMPLES)


def run_live(pytester: pytest.Pytester, defect: str, provider: str, server: AppServer) -> dict[str, Any]:
    """Against the server on its port as against a real provider: the default budget
    (--max-requests 20) and examples (one per paid rule); no rate limit, which only
    costs time here."""
    return collect(pytester, f"live-{defect}-{provider}", "--base-url", server.base_url, "--provider", provider,
                   "--target-kind", "provider", "--rps", "0")


@pytest.fixture(scope="module")
def runs() -> Iterator[DefectRuns]:
    defect_runs = DefectRuns()
    yield defect_runs
    defect_runs.close()


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


# --------------------------------------------------------------------------- live: drift off the minimal path


def failure_messages(report: dict[str, Any]) -> dict[str, str]:
    return {rule["id"]: rule.get("message", "") for block in report["providers"].values() for rule in block["rules"]
            if rule["outcome"] in ("fail", "error")}


@pytest.mark.parametrize("defect", list(LIVE_DEFECTS))
def test_live_suite_fails_on_drift_off_the_minimal_path(defect: str, defect_runs: dict[str, Any]) -> None:
    run = defect_runs[defect]
    provider, broken, planned = LIVE_DEFECTS[defect]
    assert run["report"] is not None, f"no report was written:\n{run['output']}"
    assert run["exit"] == 1, f"the suite did not fail (exit {run['exit']}):\n{run['output']}"
    assert run["report"]["budget"]["max_requests"] == 20  # the default budget
    results = outcomes(run["report"])
    messages = failure_messages(run["report"])
    for rule in broken:
        assert results.get(rule) == "fail", f"{defect}: {rule} should fail, it is {results.get(rule)!r}:\n{run['output']}"
        assert rule in run["output"], run["output"]  # named in pytest's own output
    shown = "\n".join(messages[rule] for rule in broken)
    for item in planned:
        # named with the planned request that showed it: the plan is what caught it
        assert f"planned request {item} (" in shown, (defect, item, shown[:1000])
    baseline = defect_runs[f"live-baseline:{provider}"]
    assert baseline["report"] is not None, baseline["output"]
    base = outcomes(baseline["report"])
    for rule in broken:
        assert base.get(rule) == "pass", f"{rule} is {base.get(rule)!r} on the mock served live:\n{baseline['output']}"


@pytest.mark.parametrize("provider", [provider.name for provider in PROVIDERS])
def test_live_baseline_sends_the_whole_plan_within_the_default_budget(provider: str,
                                                                      defect_runs: dict[str, Any]) -> None:
    """Against the mock served live, as against a real provider with the defaults: the
    suite passes, every planned request is sent (first) and checked, and the paid requests
    stay within --max-requests 20."""
    run = defect_runs[f"live-baseline:{provider}"]
    assert run["report"] is not None and run["exit"] == 0, run["output"]
    budget = run["report"]["budget"]
    assert budget["max_requests"] == 20 and not budget["exhausted"], budget
    plan = run["report"]["providers"][provider]["plan"]
    assert plan["items"] and all(item["sent"] and item["status"] == 200 for item in plan["items"]), plan
    assert all(item["checks"] and set(item["checks"].values()) == {"pass"} for item in plan["items"]), plan
    assert budget["planned_by_provider"][provider] == len(plan["items"])
    assert budget["paid_by_provider"][provider] <= 20
    assert f"planned requests, {provider}: {len(plan['items'])} of {len(plan['items'])} sent" in run["output"]

"""Helpers for the dashboard's tests (``test_dashboard*.py`` and ``browser/``): request bodies,
a raw ASGI call that ends a stream at once, and a reader of the live stream on a real port."""

from __future__ import annotations

import base64
import io
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
from conftest import FIXTURES, load_fixture
from PIL import Image

PT, MV, DS = "/v1/images/edits", "/v1/images/generations", "/api/v1/services/aigc/multimodal-generation/generation"
AUTH = {"Authorization": "Bearer test-key"}
PNG = (FIXTURES / "images" / "input-512.png").read_bytes()


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def noise_png(side: int, seed: int = 0) -> bytes:
    """A PNG that does not compress: its base64 is as large as asked (a body the journal
    reduces when it records it)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (side, side), bytes(rng.getrandbits(8) for _ in range(side * side * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def modelverse_body(image: str | None = None, **more: Any) -> dict[str, Any]:
    return {"model": "Qwen/Qwen-Image-Edit", "prompt": "Convert to a sketch", "image": image or data_uri(PNG), **more}


def powertokens_body(image: str = "https://example.com/cat.png", **more: Any) -> dict[str, Any]:
    body = load_fixture("seed/powertokens-request.json")
    body["input"]["messages"][0]["content"][0]["image"] = image
    body.update({"n": 1, "size": "512*512"}, **more)
    return body


def dashscope_body(**parameters: Any) -> dict[str, Any]:
    return {"model": "qwen-image-2.0-pro",
            "input": {"messages": [{"role": "user", "content": [{"image": data_uri(PNG)}, {"text": "Make it snow"}]}]},
            "parameters": {"size": "512*512", **parameters}}


def asgi_call(app: Any, path: str, *, method: str = "GET", query: bytes = b"",
              headers: list[tuple[bytes, bytes]] | None = None, seconds: float = 5.0) -> list[dict[str, Any]]:
    """Call the app in this process as a client that leaves as soon as the answer starts: a
    live stream ends at once. Returns the ASGI messages sent."""
    messages: list[dict[str, Any]] = []

    async def run() -> None:
        answered = anyio.Event()
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)
            answered.set()

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode("utf-8", "surrogateescape"),
                 "query_string": query, "root_path": "", "client": ("127.0.0.1", 5000),
                 "server": ("testserver", 80), "headers": [(b"host", b"testserver"), *(headers or [])]}
        with anyio.fail_after(seconds):
            await app(scope, receive, send)

    anyio.run(run)
    return messages


def status_of(messages: list[dict[str, Any]]) -> int:
    return next(m["status"] for m in messages if m["type"] == "http.response.start")


def body_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


class Stream:
    """The dashboard's live stream from a mock on a real port, read event by event."""

    def __init__(self, base_url: str, params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=10))
        self._context = self.client.stream("GET", f"{base_url}/__mock/events", params=params, headers=headers)
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()
        self.last_id: str | None = None

    def event(self) -> tuple[str, Any]:
        """The next event (a comment is skipped): its name and its data, decoded."""
        name, data = "message", []
        for line in self._lines:
            if line == "":
                if data:
                    return name, json.loads("\n".join(data))
                name = "message"
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                self.last_id = value
        raise EOFError("the stream ended")

    def batches(self, until: Callable[[list[dict[str, Any]]], bool], seconds: float = 10.0
                ) -> Iterator[dict[str, Any]]:
        """Batches, until ``until`` holds for the exchanges seen so far."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            name, data = self.event()
            if name != "batch":
                continue
            seen += data["exchanges"]
            yield data
            if until(seen):
                return
        raise AssertionError(f"not seen within {seconds} s; saw {[e['request_id'] for e in seen]}")

    def exchanges_until(self, request_ids: set[str], seconds: float = 10.0) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for batch in self.batches(lambda seen: request_ids <= {e["request_id"] for e in seen}, seconds):
            found.update({e["request_id"]: e for e in batch["exchanges"]})
        return found

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self.client.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def emptied(server: Any) -> Any:
    """``server`` (a mock on a port) with its journal and scenarios emptied."""
    for path in ("/__mock/requests", "/__mock/scenarios"):
        httpx.delete(server.base_url + path).raise_for_status()
    return server

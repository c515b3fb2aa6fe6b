"""Helpers of the cassette tests: the recording proxy in its own process on a free port, the
proxy in process in front of any ASGI app (an upstream with no socket), and bodies."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from conftest import free_port

from mockserver import Settings, create_app
from mockserver.cassettes.proxy import RecordingProxy
from mockserver.testing import sample_data_uri

KEY = "sk-cassette-test-key-0123456789abcdef"
UPSTREAM = "http://upstream.test"


class Recorder:
    """``qwen-image-mock record`` in its own process; its log kept in a file."""

    def __init__(self, upstream: str, cassette: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 -- closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QWEN_MOCK_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mockserver", "record", "--upstream", upstream, "--cassette", str(cassette),
             "--port", str(self.port), "--log-level", "info", *extra],
            stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the recorder exited with {self.process.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # polling for readiness, not waiting a fixed time
        raise RuntimeError("the recorder did not become ready")

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log_file.close()
        return self.log.read_text()


def in_process_proxy(upstream_app: Any, cassette: Path, **settings: Any) -> RecordingProxy:
    """The recording proxy in front of an ASGI app, reached through httpx's ASGI transport."""
    options = {key: settings.pop(key) for key in ("upstream_timeout", "download_timeout") if key in settings}
    return RecordingProxy(Settings.from_env({}, **settings), UPSTREAM, str(cassette),
                          transport=httpx.ASGITransport(app=upstream_app), **options)


def calls(app: Any, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    """Requests to an ASGI app, in process, one after the other in one event loop."""
    async def go() -> list[httpx.Response]:
        out = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
            for method, path, kwargs in requests:
                response = await client.request(method, path, **kwargs)
                await response.aread()
                out.append(response)
        return out

    return asyncio.run(go())


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return calls(app, (method, path, kwargs))[0]


def mock_app(**settings: Any) -> Any:
    return create_app(Settings.from_env({}, **settings))


def powertokens_body(**changes: Any) -> dict[str, Any]:
    body = {"model": "qwen-image-2.0-pro", "size": "1024*1024", "seed": 1,
            "input": {"messages": [{"role": "user", "content": [
                {"image": sample_data_uri("input-512.png")}, {"text": "Make it snow"}]}]}}
    body.update(copy.deepcopy(changes))
    return body


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def exchanges(cassette: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted((cassette / "exchanges").glob("*.json"))]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


AUTH_FREE = {"Authorization": "Bearer any-token-the-mock-takes"}

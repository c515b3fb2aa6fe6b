"""Shared fixtures: the mock in process, the mock on a real port, and canonical requests."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpcore  # noqa: F401  (see below)
import httpx
import pytest
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from mockserver import Settings, create_app

# httpcore is loaded here, in this process, on purpose: pytester's in-process runs (the plugin
# tests) unload the modules first imported during them, and httpx maps the exceptions of the
# httpcore it first saw; a reloaded httpcore's errors would then escape unmapped.
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
AUTH = {"Authorization": "Bearer test-key"}

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


BROWSER_TESTS = ROOT / "tests" / "browser"


def pytest_addoption(parser):
    parser.addoption("--browser", action="store_true",
                     help="collect the dashboard's browser tests in tests/browser (make test-browser)")


def pytest_ignore_collect(collection_path, config):
    """The browser tests need Chromium: only ``make test-browser`` (``--browser``) collects them."""
    if collection_path == BROWSER_TESTS and not config.getoption("--browser"):
        return True
    return None


def load_fixture(relative: str):
    return json.loads((FIXTURES / relative).read_text())


@pytest.fixture
def powertokens_request() -> dict:
    """The powertokens seed document's example request (a fresh copy per test)."""
    return copy.deepcopy(load_fixture("seed/powertokens-request.json"))


@pytest.fixture
def modelverse_request() -> dict:
    """The modelverse seed document's example, with a real 64x48 PNG as the image."""
    from imaging import data_uri, image_bytes

    body = copy.deepcopy(load_fixture("seed/modelverse-request.json"))
    body["image"] = data_uri(image_bytes())
    return body


def make_client(**overrides) -> TestClient:
    """A client of an app made with these settings (providers' own ones by their full names)
    and nothing from the environment."""
    return TestClient(create_app(Settings.from_env({}, **overrides)), headers=AUTH)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client() as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``qwen-image-mock serve`` in its own process on a free port of 127.0.0.1."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mockserver", "serve", "--port", str(self.port), "--log-level", "warning"],
            env={**os.environ, **(env or {})},
        )
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mock server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # polling for readiness, not waiting a fixed time
        raise RuntimeError("mock server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture
def start_server():
    """Start extra servers (with their own environment); all are stopped after the test."""
    started: list[LiveServer] = []

    def start(env: dict[str, str] | None = None) -> LiveServer:
        server = LiveServer(env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()

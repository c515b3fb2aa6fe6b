"""pytest plugin: the mock, for the tests of code that calls powertokens or modelverse.

Installing qwen-image-mock registers it (the ``pytest11`` entry point). Fixtures:

- ``qwen_mock``: the mock live on a free port of 127.0.0.1, started once per session
  (``qwen_mock_server``) and wiped before each test, so a test sees only its own scenarios
  and requests. It gives ``base_url``, ``openai_base_url`` (``.../v1``, for the OpenAI
  SDK), ``api_key``, ``headers``, ``requests()`` (the journal), ``fail_next()``,
  ``fail_every()``, ``add_scenario()``, ``prefer()`` and ``image_data_uri()`` (the sample
  input images shipped with the mock).
- ``qwen_mock_inprocess``: the same controls over a fresh app in this process, and
  ``client``, an ``httpx.AsyncClient`` on ``httpx.ASGITransport``: no socket, fastest.
- ``qwen_mock_client``: that ``httpx.AsyncClient`` alone.

Settings come from ``QWEN_MOCK_*`` variables and the ini option ``qwen_mock_config`` (a TOML
file, relative to the rootdir), as for ``qwen-image-mock serve``.

Each pytest process (each pytest-xdist worker too) starts its own server, so tests running
in parallel never share one; within a process tests run one at a time, and wiping the
state before each test is what scopes scenarios and the journal to it. Scenarios can still
be narrowed to one API key or ``X-Mock-Session`` value (``session=``, ``api_key=``).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette

    from .settings import Settings

SESSION_HEADER = "X-Mock-Session"
DEFAULT_API_KEY = "sk-qwen-mock"
STARTUP_TIMEOUT = 30.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("qwen_mock_config", "TOML config file of the qwen-image-mock fixtures' mock (see its README)")


def _settings(config: pytest.Config, **overrides: Any) -> Settings:
    from .settings import Settings

    path = config.getini("qwen_mock_config")
    if path:
        path = str(Path(config.rootpath, path))
    # The fixtures need their controls whatever the environment says.
    return Settings.from_env(config=path or None, disable_admin=False, workers=1, **overrides)


class MockControls:
    """What a test can do with the mock; subclasses say how they reach it."""

    base_url: str
    api_key: str
    session: str

    @property
    def openai_base_url(self) -> str:
        """For ``OpenAI(base_url=...)``: the SDK appends ``/images/generations``."""
        return f"{self.base_url}/v1"

    @property
    def headers(self) -> dict[str, str]:
        """Authorization with ``api_key``, and this test's ``X-Mock-Session``."""
        return {"Authorization": f"Bearer {self.api_key}", SESSION_HEADER: self.session}

    def requests(self, provider: str | None = None, session: str | None = None) -> list[dict[str, Any]]:
        """What the mock received during this test, oldest first (see the journal's entries)."""
        raise NotImplementedError

    def add_scenario(self, **spec: Any) -> dict[str, Any]:
        """Any scenario: ``fault``, ``latency_ms``, ``times``, ``every``, ``after``, ``rate``,
        ``seed``, ``provider``, ``session``, ``api_key``, ``retry_after_ms``, ``pause_ms``."""
        raise NotImplementedError

    def clear(self) -> None:
        """Delete all scenarios and empty the journal."""
        raise NotImplementedError

    def fail_next(self, times: int, fault: str = "rate_limit", **spec: Any) -> dict[str, Any]:
        """The next ``times`` calls fail with ``fault``; later ones succeed."""
        return self.add_scenario(fault=fault, times=times, **spec)

    def fail_every(self, every: int, fault: str = "server_error", **spec: Any) -> dict[str, Any]:
        """Every ``every``-th call fails with ``fault``."""
        return self.add_scenario(fault=fault, every=every, **spec)

    @staticmethod
    def image_data_uri(name: str = "input-512.png") -> str:
        """A sample input image shipped with the mock, as a data URI (see ``samples``)."""
        from .samples import sample_data_uri

        return sample_data_uri(name)

    @staticmethod
    def prefer(**preferences: Any) -> dict[str, str]:
        """A ``Prefer`` header: ``prefer(fault="rate_limit", retry_after_ms=20)``."""
        value = ", ".join(f"{name.replace('_', '-')}={v}" for name, v in preferences.items())
        return {"Prefer": value}


class MockServer:
    """The mock on uvicorn in a thread of this process, on a socket bound before it starts,
    so the port is known and free."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from .app import create_app
        from .protocol import BoundedHttpToolsProtocol

        self.settings = settings
        self.app = create_app(settings)
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, log_level="warning", lifespan="off", http=BoundedHttpToolsProtocol.for_settings(settings),
            timeout_graceful_shutdown=settings.shutdown_timeout))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="qwen-image-mock", daemon=True)

    def start(self) -> MockServer:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the qwen-image-mock server did not start; see the log above")
            if time.monotonic() > deadline:
                raise RuntimeError("the qwen-image-mock server did not start in time")
            time.sleep(0.005)  # polling for readiness, not waiting a fixed time
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


class LiveMock(MockControls):
    """The per-test face of the session's server, reaching its controls over HTTP."""

    def __init__(self, server: MockServer, session: str) -> None:
        import httpx

        self.server = server
        self.base_url = server.base_url
        self.api_key = min(server.settings.api_keys) if server.settings.api_keys else DEFAULT_API_KEY
        self.session = session
        self._admin = httpx.Client(base_url=f"{server.base_url}/__mock",
                                   headers={"X-Mock-Admin-Token": server.settings.admin_token or ""}, timeout=30)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._admin.request(method, path, **kwargs)
        if response.is_error:
            raise AssertionError(f"qwen-image-mock: {method} /__mock{path} answered {response.status_code}: "
                                 f"{response.text}")
        return response.json()

    def requests(self, provider: str | None = None, session: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"provider": provider, "session": session}.items() if v is not None}
        return self._call("GET", "/requests", params=params)["requests"]

    def add_scenario(self, **spec: Any) -> dict[str, Any]:
        return self._call("POST", "/scenarios", json=spec)["scenarios"][0]

    def clear(self) -> None:
        self._call("DELETE", "/scenarios")
        self._call("DELETE", "/requests")

    def close(self) -> None:
        self._admin.close()


class InProcessMock(MockControls):
    """A fresh app for one test, reached in process: ``client`` is an ``httpx.AsyncClient``
    over ``httpx.ASGITransport``. Network faults raise ``SimulatedNetworkFault`` in it."""

    base_url = "http://qwen-mock.test"

    def __init__(self, settings: Settings, session: str) -> None:
        import httpx

        from .app import create_app

        self.settings = settings
        self.app: Starlette = create_app(settings)
        self.api_key = min(settings.api_keys) if settings.api_keys else DEFAULT_API_KEY
        self.session = session
        self.client: httpx.AsyncClient = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )

    def requests(self, provider: str | None = None, session: str | None = None) -> list[dict[str, Any]]:
        journal = self.app.state.journal
        return journal.entries(provider=provider, session=session) if journal is not None else []

    def add_scenario(self, **spec: Any) -> dict[str, Any]:
        from .scenarios import ScenarioError

        try:
            return self.app.state.scenarios.add(spec)[0].describe()
        except ScenarioError as error:
            raise ValueError(f"qwen-image-mock: invalid scenario: {error}") from None

    def clear(self) -> None:
        self.app.state.scenarios.clear()
        if self.app.state.journal is not None:
            self.app.state.journal.clear()


def _session_name(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:80]}-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def qwen_mock_server(pytestconfig: pytest.Config) -> Iterator[MockServer]:
    """The live mock for the whole session; most tests want ``qwen_mock`` instead."""
    # Its own admin token, so nothing else on this machine reaches the controls.
    server = MockServer(_settings(pytestconfig, admin_token=secrets.token_urlsafe(16))).start()
    yield server
    server.stop()


@pytest.fixture
def qwen_mock(qwen_mock_server: MockServer, request: pytest.FixtureRequest) -> Iterator[LiveMock]:
    """The live mock, wiped for this test."""
    mock = LiveMock(qwen_mock_server, _session_name(request))
    mock.clear()
    yield mock
    mock.clear()  # nothing a test set up outlives it, even for code outside the fixtures
    mock.close()


@pytest.fixture
def qwen_mock_inprocess(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> InProcessMock:
    """A fresh mock app in this process, with its ``client``."""
    return InProcessMock(_settings(pytestconfig), _session_name(request))


@pytest.fixture
def qwen_mock_client(qwen_mock_inprocess: InProcessMock) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` on a fresh in-process mock, authorised; base URL
    ``http://qwen-mock.test``."""
    return qwen_mock_inprocess.client

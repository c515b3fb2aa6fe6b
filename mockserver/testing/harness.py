"""The testing harness, usable without pytest: the mock on a real port in a thread of this
process (``MockServer``), and the controls a test uses on it (``LiveMock``, over HTTP) or on
an app in this process (``InProcessMock``, over ``httpx.ASGITransport``). The pytest plugin
(``pytest_plugin.py``) is a thin layer of fixtures over these."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ..app import create_app
from ..controls.scenarios import ScenarioError
from ..core.settings import Settings
from ..providers import PROVIDERS
from ..server.protocol import BoundedHttpToolsProtocol
from .samples import sample_data_uri

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette

SESSION_HEADER = "X-Mock-Session"
DEFAULT_API_KEY = "sk-qwen-mock"
STARTUP_TIMEOUT = 30.0


class ClientUrls:
    """Where each provider's client library goes on a server at ``base_url``."""

    base_url: str

    @property
    def openai_base_url(self) -> str:
        """For ``OpenAI(base_url=...)``: the SDK appends ``/images/generations``."""
        return f"{self.base_url}/v1"

    def client_base_url(self, provider: str) -> str:
        """What ``provider``'s client library appends its paths to (``OpenAI(base_url=...)``,
        ``dashscope.base_http_api_url``...)."""
        paths = {p.name: p.client_base_path for p in PROVIDERS}
        if provider not in paths:
            raise ValueError(f"no provider {provider!r}; there are: {', '.join(paths)}")
        return f"{self.base_url}{paths[provider]}"


class MockControls(ClientUrls):
    """What a test can do with the mock; subclasses say how they reach it."""

    api_key: str
    session: str

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
        """Delete all scenarios, empty the journal and, when replaying a cassette, start every
        recorded sequence again from its first answer."""
        raise NotImplementedError

    def replay(self) -> dict[str, Any] | None:
        """The cassette being replayed and its counters (``hits``, ``misses``); None without one."""
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
        return sample_data_uri(name)

    @staticmethod
    def prefer(**preferences: Any) -> dict[str, str]:
        """A ``Prefer`` header: ``prefer(fault="rate_limit", retry_after_ms=20)``."""
        value = ", ".join(f"{name.replace('_', '-')}={v}" for name, v in preferences.items())
        return {"Prefer": value}


class ThreadedServer:
    """An ASGI app on uvicorn in a thread of this process, on a socket bound before it starts,
    so the port is known and free; the server's head and read bounds as ``serve`` has them."""

    def __init__(self, app: Any, settings: Settings, *, name: str, **config: Any) -> None:
        import uvicorn

        self.settings = settings
        self.app = app
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", http=BoundedHttpToolsProtocol.for_settings(settings),
            timeout_graceful_shutdown=settings.shutdown_timeout, **config))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the {self._thread.name} server did not start; see the log above")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self._thread.name} server did not start in time")
            time.sleep(0.005)  # polling for readiness, not waiting a fixed time
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MockServer(ThreadedServer):
    """The mock on uvicorn in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings), settings, name="qwen-image-mock", lifespan="off")


class RecordingServer(ThreadedServer, ClientUrls):
    """``qwen-image-mock record`` in a thread of this process: the recording proxy in front of
    ``upstream``, writing to ``cassette`` (see ``cassettes/proxy.py``). ``base_url`` is where a
    client goes instead of the provider; ``openai_base_url`` and ``client_base_url`` work
    as on the mock."""

    def __init__(self, upstream: str, cassette: str | Path, settings: Settings | None = None,
                 upstream_timeout: float = 300.0, download_timeout: float = 60.0) -> None:
        from ..cassettes.proxy import RecordingProxy

        settings = settings or Settings()
        self.proxy = RecordingProxy(settings, upstream, str(cassette), upstream_timeout=upstream_timeout,
                                    download_timeout=download_timeout)
        # The upstream's answers go back as they came: no Server or Date header of the proxy's.
        super().__init__(self.proxy, settings, name="qwen-image-mock-record", lifespan="on", server_header=False,
                         date_header=False)


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
        if self.server.settings.replay:
            self._call("DELETE", "/replay")

    def replay(self) -> dict[str, Any] | None:
        return self._call("GET", "/replay")["replay"] if self.server.settings.replay else None

    def close(self) -> None:
        self._admin.close()


class InProcessMock(MockControls):
    """A fresh app for one test, reached in process: ``client`` is an ``httpx.AsyncClient``
    over ``httpx.ASGITransport``. Network faults raise ``SimulatedNetworkFault`` in it."""

    base_url = "http://qwen-mock.test"

    def __init__(self, settings: Settings, session: str) -> None:
        import httpx

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
        try:
            return self.app.state.scenarios.add(spec)[0].describe()
        except ScenarioError as error:
            raise ValueError(f"qwen-image-mock: invalid scenario: {error}") from None

    def clear(self) -> None:
        self.app.state.scenarios.clear()
        if self.app.state.journal is not None:
            self.app.state.journal.clear()
        if self.app.state.replay is not None:
            self.app.state.replay.rewind()

    def replay(self) -> dict[str, Any] | None:
        return self.app.state.replay.describe() if self.app.state.replay is not None else None

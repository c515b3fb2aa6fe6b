"""pytest plugin: the mock, for the tests of code that calls these image-editing APIs. A thin
layer of fixtures over the testing harness (``harness.py``), which needs no pytest.

Installing qwen-image-mock registers it (the ``pytest11`` entry point). Fixtures:

- ``qwen_mock``: the mock live on a free port of 127.0.0.1, started once per session
  (``qwen_mock_server``) and wiped before each test, so a test sees only its own scenarios
  and requests. It gives ``base_url``, ``openai_base_url`` (``.../v1``, for the OpenAI
  SDK), ``client_base_url(provider)`` (for any provider's client library), ``api_key``,
  ``headers``, ``requests()`` (the journal), ``fail_next()``,
  ``fail_every()``, ``add_scenario()``, ``prefer()`` and ``image_data_uri()`` (the sample
  input images shipped with the mock).
- ``qwen_mock_inprocess``: the same controls over a fresh app in this process, and
  ``client``, an ``httpx.AsyncClient`` on ``httpx.ASGITransport``: no socket, fastest.
- ``qwen_mock_client``: that ``httpx.AsyncClient`` alone.
- ``qwen_mock_replay``: a function, ``qwen_mock_replay("tests/cassettes/checkout", strict=False)``,
  giving the controls of a live mock that answers from that cassette first (``--replay``;
  relative paths from the rootdir), rewound and wiped for this test. One server per cassette
  (and strictness) for the whole session.

Settings come from ``QWEN_MOCK_*`` variables and the ini option ``qwen_mock_config`` (a TOML
file, relative to the rootdir), as for ``qwen-image-mock serve``.

Each pytest process (each pytest-xdist worker too) starts its own server, so tests running
in parallel never share one; within a process tests run one at a time, and wiping the
state before each test is what scopes scenarios and the journal to it. Scenarios can still
be narrowed to one API key or ``X-Mock-Session`` value (``session=``, ``api_key=``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# The plugin loads in every pytest session of a project that installs the mock: the app
# itself is imported only when a fixture is used.
if TYPE_CHECKING:
    import httpx

    from ..core.settings import Settings
    from .harness import InProcessMock, LiveMock, MockServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("qwen_mock_config", "TOML config file of the qwen-image-mock fixtures' mock (see its README)")


def _settings(config: pytest.Config, **overrides: Any) -> Settings:
    from ..core.settings import Settings

    path = config.getini("qwen_mock_config")
    if path:
        path = str(Path(config.rootpath, path))
    # The fixtures need their controls whatever the environment says.
    return Settings.from_env(config=path or None, disable_admin=False, workers=1, **overrides)


def _session_name(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:80]}-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def qwen_mock_server(pytestconfig: pytest.Config) -> Iterator[MockServer]:
    """The live mock for the whole session; most tests want ``qwen_mock`` instead."""
    # Its own admin token, so nothing else on this machine reaches the controls.
    from .harness import MockServer

    server = MockServer(_settings(pytestconfig, admin_token=secrets.token_urlsafe(16))).start()
    yield server
    server.stop()


@pytest.fixture
def qwen_mock(qwen_mock_server: MockServer, request: pytest.FixtureRequest) -> Iterator[LiveMock]:
    """The live mock, wiped for this test."""
    from .harness import LiveMock

    mock = LiveMock(qwen_mock_server, _session_name(request))
    mock.clear()
    yield mock
    mock.clear()  # nothing a test set up outlives it, even for code outside the fixtures
    mock.close()


@pytest.fixture
def qwen_mock_inprocess(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> InProcessMock:
    """A fresh mock app in this process, with its ``client``."""
    from .harness import InProcessMock

    return InProcessMock(_settings(pytestconfig), _session_name(request))


@pytest.fixture
def qwen_mock_client(qwen_mock_inprocess: InProcessMock) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` on a fresh in-process mock, authorised; base URL
    ``http://qwen-mock.test``."""
    return qwen_mock_inprocess.client


@pytest.fixture(scope="session")
def qwen_mock_replay_servers() -> Iterator[dict[tuple[str, bool], MockServer]]:
    """The replaying servers ``qwen_mock_replay`` started, one per (cassette, strict)."""
    servers: dict[tuple[str, bool], MockServer] = {}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def qwen_mock_replay(pytestconfig: pytest.Config, qwen_mock_replay_servers: dict[tuple[str, bool], MockServer],
                     request: pytest.FixtureRequest) -> Iterator[Callable[..., LiveMock]]:
    """``qwen_mock_replay(cassette, strict=False)``: a live mock replaying ``cassette`` (a
    directory made by ``qwen-image-mock record``), its sequences rewound and its journal and
    scenarios wiped for this test. A cassette that cannot be used fails the test at once,
    naming the file and the field."""
    from .harness import LiveMock, MockServer

    opened: list[LiveMock] = []

    def replay(cassette: str | Path, *, strict: bool = False) -> LiveMock:
        path = Path(cassette)
        if not path.is_absolute():
            path = Path(pytestconfig.rootpath, path)
        key = (str(path.resolve()), strict)
        server = qwen_mock_replay_servers.get(key)
        if server is None:
            settings = _settings(pytestconfig, admin_token=secrets.token_urlsafe(16), replay=key[0],
                                 replay_strict=strict)
            server = qwen_mock_replay_servers[key] = MockServer(settings).start()
        mock = LiveMock(server, _session_name(request))
        mock.clear()
        opened.append(mock)
        return mock

    yield replay
    for mock in opened:
        mock.clear()
        mock.close()

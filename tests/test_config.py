"""Settings from a TOML config file beside flags and environment variables (flags > env >
file > defaults), and ``--workers N``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port, load_fixture, make_client

from mockserver import Settings, cli
from mockserver.core.config import read_config

MV_BODY = {"model": "Qwen/Qwen-Image-Edit", "prompt": "Convert to a sketch", "image": "https://example.com/a.png"}


def write(tmp_path: Path, text: str, name: str = "mock.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- reading the file ------------------------------------------------------------------------


def test_every_kind_of_value(tmp_path):
    path = write(tmp_path, """
api_keys = ["sk-one", "sk-two"]
strict = true
frozen-time = 1700000000
latency = "100-400"
chaos_rate = 0.05
chaos_faults = ["rate_limit", "reset"]
journal_cap = 50
url_lifetime = 60
modelverse_b64_style = "plain"
admin_token = "tok"
disable_admin = false
""")
    settings = Settings.from_env({"QWEN_MOCK_CONFIG": path})
    assert settings.api_keys == frozenset({"sk-one", "sk-two"})
    assert settings.strict is True
    assert settings.frozen_time == 1700000000
    assert settings.latency == (100, 400)
    assert settings.chaos_rate == 0.05
    assert settings.chaos_faults == ("rate_limit", "reset")
    assert settings.journal_cap == 50
    assert settings.url_lifetime == 60
    assert settings.option("modelverse_b64_style") == "plain"
    assert settings.admin_token == "tok" and settings.disable_admin is False


def test_a_fixed_latency_can_be_a_number(tmp_path):
    assert Settings.from_env({"QWEN_MOCK_CONFIG": write(tmp_path, "latency = 250")}).latency == (250, 250)


def test_pyproject_table(tmp_path):
    path = write(tmp_path, """
[project]
name = "my-app"

[tool.qwen-image-mock]
strict = true
journal_cap = 7
""", "pyproject.toml")
    settings = Settings.from_env({"QWEN_MOCK_CONFIG": path})
    assert (settings.strict, settings.journal_cap) == (True, 7)


@pytest.mark.parametrize("text, message", [
    ("jurnal_cap = 5", "'jurnal_cap' is not a setting; settings: admin_token, api_keys"),
    ("port = 9000", "'port' is not a setting (host, port and log level are command-line options)"),
    ("config = 'other.toml'", "'config' is not a setting"),
    ("strict = 'yes'", "strict must be true or false"),
    ("journal_cap = true", "journal_cap must be a number, a string or a list, not a boolean"),
    ("journal_cap = 'many'", "journal_cap: must be a whole number, not 'many'"),
    ("latency = 'slow'", "latency: latency must be MS or MIN-MAX"),
    ("modelverse_b64_style = 'raw'", "modelverse_b64_style must be one of data-uri, plain"),
    ("strict = ", "not valid TOML"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"QWEN_MOCK_CONFIG": path})
    assert str(caught.value).startswith(f"config file {path}: ")
    assert message in str(caught.value)


def test_a_value_the_settings_refuse_is_refused(tmp_path):
    with pytest.raises(ValueError, match="chaos_rate must be between 0 and 1"):
        Settings.from_env({"QWEN_MOCK_CONFIG": write(tmp_path, "chaos_rate = 2")})


def test_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="config file .*nothere.toml: No such file"):
        Settings.from_env({"QWEN_MOCK_CONFIG": str(tmp_path / "nothere.toml")})


def test_read_config_returns_only_what_the_file_sets(tmp_path):
    assert read_config(write(tmp_path, "strict = true"), Settings.specs()) == {"strict": True}


# --- precedence: flags > environment > file > defaults ---------------------------------------


def test_environment_beats_the_file_and_the_file_beats_defaults(tmp_path):
    path = write(tmp_path, "journal_cap = 3\nretry_after_ms = 3000\nstrict = true")
    settings = Settings.from_env({"QWEN_MOCK_CONFIG": path, "QWEN_MOCK_RETRY_AFTER_MS": "2000",
                                  "QWEN_MOCK_STRICT": "0"})
    assert settings.journal_cap == 3  # file over default (1000)
    assert settings.retry_after_ms == 2000  # environment over file
    assert settings.strict is False  # environment over file, for a flag too
    assert settings.chaos_rate == 0.0  # default
    assert Settings.from_env({"QWEN_MOCK_CONFIG": path}, journal_cap=9).journal_cap == 9  # override over all


@pytest.fixture
def serve_settings(monkeypatch) -> Iterator[list[tuple[Settings, dict]]]:
    """Run ``qwen-image-mock serve`` up to the point it would start uvicorn; collect the
    settings a worker would build from its environment, and what uvicorn was asked for."""
    import uvicorn

    for spec in Settings.specs():  # a clean environment, restored afterwards
        monkeypatch.setenv(spec.env, "")
    seen: list[tuple[Settings, dict]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.append((Settings.from_env(), kwargs)))
    yield seen


def test_cli_flags_beat_environment_and_file(tmp_path, monkeypatch, serve_settings):
    path = write(tmp_path, 'journal_cap = 3\nretry_after_ms = 3000\nlatency = "5-10"\nworkers = 2')
    monkeypatch.setenv("QWEN_MOCK_JOURNAL_CAP", "4")
    monkeypatch.setenv("QWEN_MOCK_RETRY_AFTER_MS", "2000")
    assert cli.main(["serve", "--config", path, "--journal-cap", "5"]) == 0
    [(settings, uvicorn_options)] = serve_settings
    assert settings.journal_cap == 5  # flag
    assert settings.retry_after_ms == 2000  # environment
    assert settings.latency == (5, 10)  # file
    assert settings.chaos_seed == 0  # default
    assert uvicorn_options["workers"] == 2  # from the file, handed to uvicorn


def test_cli_config_from_the_environment(tmp_path, monkeypatch, serve_settings):
    monkeypatch.setenv("QWEN_MOCK_CONFIG", write(tmp_path, "strict = true"))
    cli.main(["serve"])
    assert serve_settings[0][0].strict is True


def test_cli_fails_early_on_a_bad_file(tmp_path, serve_settings, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--config", write(tmp_path, "jurnal_cap = 1")])
    assert exit_info.value.code == 2
    assert "'jurnal_cap' is not a setting" in capsys.readouterr().err
    assert serve_settings == []


def test_cli_names_the_setting_whose_value_is_bad(serve_settings, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--max-body-bytes", "lots"])
    assert exit_info.value.code == 2
    assert "--max-body-bytes" in capsys.readouterr().err
    assert serve_settings == []


# --- the real thing: a served mock -----------------------------------------------------------


class Served:
    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("QWEN_MOCK_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mockserver", "serve", "--port", str(self.port), "--log-level", "warning", *args],
            env={**clean, **(env or {})},
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"the mock exited with {self.process.returncode}"
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the mock did not become ready"
            time.sleep(0.05)  # polling for readiness

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture
def serve() -> Iterator:
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Served:
        started.append(Served(list(args), env))
        return started[-1]

    yield start
    for served in started:
        served.stop()


def test_a_served_mock_layers_flags_environment_and_file(tmp_path, serve):
    path = write(tmp_path, 'api_keys = ["from-the-file"]\njournal_cap = 3\nretry_after_ms = 3000\n')
    served = serve("--config", path, "--journal-cap", "5", env={"QWEN_MOCK_RETRY_AFTER_MS": "2000"})
    with httpx.Client(base_url=served.base_url) as http:
        assert http.get("/__mock/requests").json()["cap"] == 5  # flag over file
        limited = http.post("/v1/images/generations", json=MV_BODY,
                            headers={"Authorization": "Bearer from-the-file", "Prefer": "code=429"})
        assert limited.headers["retry-after-ms"] == "2000"  # environment over file
        assert http.post("/v1/images/generations", json=MV_BODY,
                         headers={"Authorization": "Bearer from-the-file"}).status_code == 200
        assert http.post("/v1/images/generations", json=MV_BODY,
                         headers={"Authorization": "Bearer another"}).status_code == 401  # keys from the file


def test_two_workers_serve_each_others_links(serve):
    served = serve("--workers", "2")
    auth = {"Authorization": "Bearer k"}
    body = {**load_fixture("seed/powertokens-request.json"), "n": 1, "size": "512*512"}
    workers_seen: set[str] = set()
    crossed = None
    # A fresh connection per request, so the kernel may hand each to either worker.
    with httpx.Client(base_url=served.base_url, headers=auth,
                      limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for attempt in range(300):
            issued = http.post("/v1/images/edits", json={**body, "seed": attempt})
            assert issued.status_code == 200, issued.text
            fetched = http.get(issued.json()["data"][0]["url"])
            assert fetched.status_code == 200
            assert fetched.headers["content-type"] == "image/png"
            workers_seen |= {issued.headers["x-mock-worker"], fetched.headers["x-mock-worker"]}
            if issued.headers["x-mock-worker"] != fetched.headers["x-mock-worker"]:
                crossed = (issued.headers["x-mock-worker"], fetched.headers["x-mock-worker"])
                break
        assert crossed, f"every link was served by the worker that issued it (workers seen: {workers_seen})"
        # Each worker keeps its own scenarios and journal, and says so.
        admin = http.get("/__mock/requests")
        assert admin.headers["x-mock-worker"] in workers_seen
        assert "2 workers, each with its own scenarios and journal" in admin.headers["x-mock-warnings"]


def test_url_lifetime_overrides_the_providers():
    from conftest import make_client

    body = {**load_fixture("seed/powertokens-request.json"), "n": 1, "size": "512*512"}
    with make_client(url_lifetime=60, frozen_time=1_700_000_000) as issuing:
        url = issuing.post("/v1/images/edits", json=body).json()["data"][0]["url"]
    with make_client(frozen_time=1_700_000_060) as later:
        assert later.get(url).status_code == 200  # still valid at its last second
    with make_client(frozen_time=1_700_000_061) as too_late:
        expired = too_late.get(url)
        assert expired.status_code == 403  # not the provider's 24 hours
        assert expired.json()["error"]["code"] == "AccessDenied"


# --- every value checked at start-up -------------------------------------------------------------


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--url-lifetime", "99999999999999999999", "url_lifetime must be between 0 and 315,360,000"),
    ("--url-lifetime", "-1", "url_lifetime must be between"),
    ("--max-body-bytes", "-5", "max_body_bytes must be between 1 and"),
    ("--max-body-bytes", "0", "max_body_bytes must be between 1 and"),
    ("--render-cache-bytes", "-1", "render_cache_bytes must be between 0 and"),
    ("--journal-cap", "-3", "journal_cap must be between 0 and"),
    ("--journal-max-bytes", "10", "journal_max_bytes must be between"),
    ("--workers", "0", "workers must be between 1 and"),
    ("--chaos-rate", "nan", "chaos_rate must be between 0 and 1"),
    ("--chaos-rate", "inf", "chaos_rate must be between 0 and 1"),
    ("--read-timeout", "0", "read_timeout must be between"),
    ("--max-header-bytes", "100", "max_header_bytes must be between"),
    ("--frozen-time", "-1", "frozen_time must be between"),
    ("--retry-after-ms", "99999999999", "retry_after_ms must be between"),
    ("--latency-seed", "²", "must be a whole number"),
    ("--public-base-url", "ftp://mock", "must be an http(s) URL"),
    ("--public-base-url", "mock:8000", "must be an http(s) URL"),
])
def test_a_value_out_of_range_stops_the_mock_at_start_up(serve_settings, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert serve_settings == []


@pytest.mark.parametrize("value", ["y", "maybe", "2", "enabled"])
def test_a_boolean_that_is_not_one_is_refused(monkeypatch, value):
    with pytest.raises(ValueError, match="QWEN_MOCK_DISABLE_ADMIN .*must be one of"):
        Settings.from_env({"QWEN_MOCK_DISABLE_ADMIN": value})


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("TRUE", True), ("on", True), ("no", False),
                                                 ("Off", False), ("0", False)])
def test_booleans_in_the_environment(value, expected):
    assert Settings.from_env({"QWEN_MOCK_STRICT": value}).strict is expected


def test_booleans_can_be_turned_off_from_the_cli(monkeypatch, serve_settings):
    monkeypatch.setenv("QWEN_MOCK_STRICT", "1")
    cli.main(["serve", "--no-strict"])
    cli.main(["serve", "--strict"])
    assert [settings.strict for settings, _ in serve_settings] == [False, True]


def test_a_pyproject_without_the_table_sets_nothing(tmp_path):
    path = write(tmp_path, '[project]\nname = "my-app"\n\n[tool.ruff]\nline-length = 100\n', "pyproject.toml")
    assert Settings.from_env({"QWEN_MOCK_CONFIG": path}) == Settings(config=path)


def test_the_public_base_url_loses_its_trailing_slash():
    with make_client(public_base_url="http://mock.example:9/") as client:
        response = client.post("/v1/images/generations", json=MV_BODY)
    url = response.json()["data"][0]["url"]
    assert url.startswith("http://mock.example:9/files/"), url


def test_the_server_is_given_the_protocol_and_shutdown_bounds(serve_settings):
    from mockserver.server.protocol import BoundedHttpToolsProtocol

    cli.main(["serve", "--shutdown-timeout", "2.5"])
    [(_, options)] = serve_settings
    assert options["http"] is BoundedHttpToolsProtocol
    assert options["timeout_graceful_shutdown"] == 2.5

"""What a user can set: from CLI flags, ``QWEN_MOCK_*`` environment variables, or a TOML
config file, in that order of precedence. Every value is checked when the settings are
made, so a bad one stops the mock at start-up with a message naming it, never a failing
request later."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from .config import read_config
from .formats import AllowedHost, parse_hosts
from .schemas import provider_settings

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
DAY = 24 * 3600

# Signing key for image links. Links are signed so that any mock process (another worker,
# or the same one after a restart) can serve a link it never saw; the key is not a secret
# worth protecting in a mock, but can be set so two deployments do not accept each other's.
DEFAULT_URL_SECRET = "qwen-image-mock"

# Bounds on what a request may ask for, so no request can hold the server for long.
MAX_LATENCY_MS = 600_000
MAX_RETRY_AFTER_MS = 3_600_000

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _flag(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"must be one of {', '.join(sorted(TRUE_WORDS | FALSE_WORDS))}, not {text!r}")


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"must be a whole number, not {text[:40]!r}") from None


def _number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"must be a number, not {text[:40]!r}") from None


def parse_latency(text: str) -> tuple[int, int]:
    """``250`` (fixed) or ``100-400`` (a range), in milliseconds."""
    low, _, high = text.strip().partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise ValueError(f"latency must be MS or MIN-MAX in milliseconds, not {text!r}") from None
    check_latency(bounds)
    return bounds


def check_latency(bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not 0 <= low <= high <= MAX_LATENCY_MS:
        raise ValueError(f"latency must be within 0-{MAX_LATENCY_MS} ms with MIN <= MAX, not {low}-{high}")


def _keys(text: str) -> frozenset[str]:
    return frozenset(key.strip() for key in text.split(",") if key.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _base_url(text: str) -> str:
    """``http(s)://host[:port][/prefix]``, without a trailing slash: links are the base plus
    ``/files/...``."""
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as error:
        raise ValueError(f"{text!r} is not a URL: {error}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"must be an http(s) URL with a host and no query, such as http://mock:8000, not {text!r}")
    return text.strip().rstrip("/")


def _directory(text: str) -> str:
    """A directory given by path (made absolute, so worker processes find it too); it is
    read, and checked whole, when the app is made."""
    path = os.path.abspath(os.path.expanduser(text.strip()))
    if not text.strip():
        raise ValueError("must name a directory")
    return path


DEFAULT_CHAOS_FAULTS = ("rate_limit", "server_error", "overloaded", "timeout")


def setting(default: Any, env: str, parse: Any, help: str, **more: Any) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "help": help, **more})


@dataclass(frozen=True)
class Settings:
    api_keys: frozenset[str] = setting(
        frozenset(), "QWEN_MOCK_API_KEYS", _keys,
        "comma-separated bearer tokens to accept; empty accepts any non-empty token")
    strict: bool = setting(
        False, "QWEN_MOCK_STRICT", _flag,
        "reject unknown fields, over-long prompts and images outside the recommended 384-3072 px per side, "
        "which are otherwise accepted with a warning")
    frozen_time: int | None = setting(
        None, "QWEN_MOCK_FROZEN_TIME", _integer,
        "Unix time to report as `created` and to date links from, so whole responses are reproducible",
        range=(0, 4_102_444_800))  # 2100-01-01
    public_base_url: str | None = setting(
        None, "QWEN_MOCK_PUBLIC_BASE_URL", _base_url,
        "base of the image links the mock hands out (default: the URL the request came to)")
    max_body_bytes: int = setting(
        20 * MIB, "QWEN_MOCK_MAX_BODY_BYTES", _integer,
        "largest request body accepted; larger ones get 413 without being read", range=(1, GIB))
    max_header_bytes: int = setting(
        64 * KIB, "QWEN_MOCK_MAX_HEADER_BYTES", _integer,
        "largest request head (request line and headers) accepted; larger ones get 431",
        range=(4 * KIB, 16 * MIB))
    read_timeout: float = setting(
        30.0, "QWEN_MOCK_READ_TIMEOUT", _number,
        "seconds a client has to send a whole request (head and body) from its first byte; a slower one "
        "gets 408 and its connection is closed", range=(0.01, 3600))
    url_secret: str = setting(
        DEFAULT_URL_SECRET, "QWEN_MOCK_URL_SECRET", str,
        "key that signs image links; mocks sharing it serve each other's links")
    fetch_hosts: frozenset[AllowedHost] = setting(
        frozenset(), "QWEN_MOCK_FETCH_HOSTS", parse_hosts,
        "comma-separated hosts (host, or host:port for that port only) whose http(s) image URLs the mock "
        "may download (no redirects, 10 MB, --fetch-timeout); empty (the default) never fetches a URL from a request")
    fetch_timeout: float = setting(
        10.0, "QWEN_MOCK_FETCH_TIMEOUT", _number,
        "seconds a download from --fetch-hosts may take in all; slower ones are a 400", range=(0.01, 600))
    render_cache_bytes: int = setting(
        64 * MIB, "QWEN_MOCK_RENDER_CACHE_BYTES", _integer,
        "memory for recently rendered PNGs, so fetching a link twice renders once", range=(0, 16 * GIB))
    url_lifetime: int | None = setting(
        None, "QWEN_MOCK_URL_LIFETIME", _integer,
        "seconds an image link stays valid (default: each provider's own, x-expires-after in its response "
        "schema)", range=(0, 3650 * DAY))
    latency: tuple[int, int] = setting(
        (0, 0), "QWEN_MOCK_LATENCY", parse_latency,
        "time the edit endpoints take to answer, in ms: fixed (250) or a range (100-400) drawn by a "
        "generator seeded with --latency-seed")
    latency_seed: int = setting(
        0, "QWEN_MOCK_LATENCY_SEED", _integer,
        "seed of the latency range's generator, so a run's delays repeat", range=(0, 2**63 - 1))
    chaos_rate: float = setting(
        0.0, "QWEN_MOCK_CHAOS_RATE", _number,
        "share of edit calls (0-1) failed at random with one of --chaos-faults, for soak tests", range=(0, 1))
    chaos_seed: int = setting(
        0, "QWEN_MOCK_CHAOS_SEED", _integer,
        "seed of chaos's generator: the same seed fails the same calls, run to run", range=(0, 2**63 - 1))
    chaos_faults: tuple[str, ...] = setting(
        DEFAULT_CHAOS_FAULTS, "QWEN_MOCK_CHAOS_FAULTS", _names,
        "comma-separated faults chaos picks from (default: " + ",".join(DEFAULT_CHAOS_FAULTS) + ")")
    retry_after_ms: int = setting(
        1000, "QWEN_MOCK_RETRY_AFTER_MS", _integer,
        "delay a rate_limit or overloaded fault asks for (Retry-After, retry-after-ms) unless the fault "
        "names its own", range=(0, MAX_RETRY_AFTER_MS))
    journal_cap: int = setting(
        1000, "QWEN_MOCK_JOURNAL_CAP", _integer,
        "requests the journal (GET /__mock/requests) keeps, the oldest dropped first; 0 turns it off",
        range=(0, 1_000_000))
    journal_max_bytes: int = setting(
        32 * MIB, "QWEN_MOCK_JOURNAL_MAX_BYTES", _integer,
        "memory the journal may hold; the oldest entries are dropped first to stay within it",
        range=(64 * KIB, 16 * GIB))
    disable_admin: bool = setting(
        False, "QWEN_MOCK_DISABLE_ADMIN", _flag,
        "no /__mock/ endpoints (scenarios, journal) and no journal, for a mock exposed beyond your machine")
    admin_token: str | None = setting(
        None, "QWEN_MOCK_ADMIN_TOKEN", str,
        "token the /__mock/ endpoints require (Authorization: Bearer or X-Mock-Admin-Token)")
    workers: int = setting(
        1, "QWEN_MOCK_WORKERS", _integer,
        "uvicorn worker processes; links work across them, scenarios and the journal are per worker",
        range=(1, 256))
    shutdown_timeout: float = setting(
        5.0, "QWEN_MOCK_SHUTDOWN_TIMEOUT", _number,
        "seconds a stopping server waits for requests in flight (a long Prefer latency among them) "
        "before cancelling them", range=(0, 3600))
    replay: str | None = setting(
        None, "QWEN_MOCK_REPLAY", _directory,
        "cassette directory (made by `qwen-image-mock record`) to answer the edit endpoints from first: a request "
        "that matches a recorded one gets the recorded answer, others the mock's own (x-mock-replay: hit or miss)")
    replay_strict: bool = setting(
        False, "QWEN_MOCK_REPLAY_STRICT", _flag,
        "with --replay, answer a request the cassette does not hold with a 404 in the provider's envelope naming "
        "the nearest recorded request and the fields that differ, instead of generating images")
    cassette_max_bytes: int = setting(
        256 * MIB, "QWEN_MOCK_CASSETTE_MAX_BYTES", _integer,
        "largest cassette, its images included: `record` stops adding exchanges past it (they are still relayed), "
        "--replay refuses a larger one at start-up", range=(64 * KIB, 64 * GIB))
    cassette_max_exchange_bytes: int = setting(
        32 * MIB, "QWEN_MOCK_CASSETTE_MAX_EXCHANGE_BYTES", _integer,
        "largest exchange (request and answer, images included) `record` keeps, and the most of an upstream answer "
        "it reads before relaying the rest unrecorded; --replay refuses a cassette with a larger one",
        range=(64 * KIB, 4 * GIB))
    # Each provider's own settings, declared in its schema folder (``x-settings``), by their
    # full names (``modelverse_b64_style``): see ``option_specs``.
    options: Mapping[str, Any] = field(default_factory=dict, metadata={"env": None})
    config: str | None = setting(
        None, "QWEN_MOCK_CONFIG", str,
        "TOML file of settings, named as these flags are (api_keys = [...], latency = \"100-400\"); flags "
        "and environment variables override it")

    @classmethod
    def specs(cls) -> list[SettingSpec]:
        """Every setting, the core's and the providers', as flags, variables and file keys name them."""
        core = [SettingSpec(f.name, f.default, f.metadata["env"], f.metadata["parse"], f.metadata["help"],
                            f.metadata.get("choices"), f.type in ("bool", bool))
                for f in fields(cls) if f.metadata.get("env")]
        return core + option_specs()

    def option(self, name: str) -> Any:
        """A provider's setting by its full name."""
        return self.options[name]

    def __post_init__(self) -> None:
        options = dict(self.options)
        for spec in option_specs():
            options.setdefault(spec.name, spec.default)
            if spec.choices and options[spec.name] not in spec.choices:
                raise ValueError(f"{spec.name} must be one of {', '.join(spec.choices)}, not {options[spec.name]!r}")
        unknown = sorted(set(options) - {spec.name for spec in option_specs()})
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
        object.__setattr__(self, "options", options)
        # The Python API may give values as the flags do: hosts as strings, a base URL with a slash.
        object.__setattr__(self, "fetch_hosts", frozenset(
            AllowedHost.parse(entry) if isinstance(entry, str) else entry for entry in self.fetch_hosts))
        if self.public_base_url is not None:
            try:
                object.__setattr__(self, "public_base_url", _base_url(self.public_base_url))
            except ValueError as error:
                raise ValueError(f"public_base_url {error}") from None
        for f in fields(self):
            if not f.metadata.get("env"):
                continue
            value = getattr(self, f.name)
            choices, bounds = f.metadata.get("choices"), f.metadata.get("range")
            if choices and value not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(choices)}, not {value!r}")
            if bounds and value is not None and not (
                    not isinstance(value, bool) and math.isfinite(value) and bounds[0] <= value <= bounds[1]):
                raise ValueError(f"{f.name} must be between {bounds[0]:,} and {bounds[1]:,}, not {value!r}")
        if self.replay_strict and not self.replay:
            raise ValueError("replay_strict needs replay: the cassette directory to replay")
        if self.admin_token == "":
            raise ValueError("admin_token must not be empty")
        self._check_mock_controls()

    def _check_mock_controls(self) -> None:
        # The fault names chaos draws from are checked by the test controls that know them.
        check_latency(self.latency)

    def now(self) -> int:
        return self.frozen_time if self.frozen_time is not None else int(time.time())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``QWEN_MOCK_*`` variables over the config file they (or an override)
        name; explicit overrides (CLI flags, already parsed) win. Providers' settings go by
        their full names here too."""
        environ = os.environ if environ is None else environ
        specs = cls.specs()
        values: dict[str, Any] = {}
        config = overrides.get("config") or environ.get("QWEN_MOCK_CONFIG")
        if config:
            values.update(read_config(config, specs))
        for spec in specs:
            if environ.get(spec.env, "") != "":
                try:
                    values[spec.name] = spec.parse(environ[spec.env])
                except ValueError as error:
                    raise ValueError(f"{spec.env} (--{spec.name.replace('_', '-')}): {error}") from None
        values.update({key: value for key, value in overrides.items() if value is not None})
        core = {f.name for f in fields(cls)}
        options = {name: values.pop(name) for name in list(values) if name not in core}
        return cls(**values, options={**values.pop("options", {}), **options})


class SettingSpec(NamedTuple):
    """One setting as a user names it: flag ``--name``, variable ``env``, file key ``name``."""

    name: str
    default: Any
    env: str
    parse: Callable[[str], Any]
    help: str
    choices: tuple[str, ...] | None = None
    is_flag: bool = False


OPTION_TYPES: dict[str, Callable[[str], Any]] = {"string": str, "boolean": _flag, "integer": _integer}


@cache
def option_specs() -> list[SettingSpec]:
    """The providers' own settings, from the ``x-settings`` keyword of each provider's request
    schema: ``{"<name>": {"env", "default", "help", "type" or "choices"}}``, named
    ``<provider>_<name>``."""
    return [
        SettingSpec(f"{provider}_{name}", spec["default"], spec["env"], OPTION_TYPES[spec.get("type", "string")],
                    spec["help"], tuple(spec["choices"]) if "choices" in spec else None,
                    spec.get("type") == "boolean")
        for provider, declared in provider_settings().items()
        for name, spec in declared.items()
    ]

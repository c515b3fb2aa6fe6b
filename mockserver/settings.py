"""What a user can set: from CLI flags, ``QWEN_MOCK_*`` environment variables, or a TOML
config file, in that order of precedence."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .config import read_config
from .faults import FAULT_NAMES, check_latency, parse_latency

MIB = 1024 * 1024

# Signing key for image links. Links are signed so that any mock process (another worker,
# or the same one after a restart) can serve a link it never saw; the key is not a secret
# worth protecting in a mock, but can be set so two deployments do not accept each other's.
DEFAULT_URL_SECRET = "qwen-image-mock"


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _keys(text: str) -> frozenset[str]:
    return frozenset(key.strip() for key in text.split(",") if key.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


DEFAULT_CHAOS_FAULTS = ("rate_limit", "server_error", "overloaded", "timeout")


@dataclass(frozen=True)
class Settings:
    api_keys: frozenset[str] = field(
        default=frozenset(),
        metadata={"env": "QWEN_MOCK_API_KEYS", "parse": _keys,
                  "help": "comma-separated bearer tokens to accept; empty accepts any non-empty token"},
    )
    strict: bool = field(
        default=False,
        metadata={"env": "QWEN_MOCK_STRICT", "parse": _flag,
                  "help": "reject unknown fields, over-long prompts and images outside the recommended "
                          "384-3072 px per side, which are otherwise accepted with a warning"},
    )
    frozen_time: int | None = field(
        default=None,
        metadata={"env": "QWEN_MOCK_FROZEN_TIME", "parse": int,
                  "help": "Unix time to report as `created` and to date links from, so whole responses "
                          "are reproducible"},
    )
    public_base_url: str | None = field(
        default=None,
        metadata={"env": "QWEN_MOCK_PUBLIC_BASE_URL", "parse": str,
                  "help": "base of the image links the mock hands out (default: the URL the request came to)"},
    )
    max_body_bytes: int = field(
        default=20 * MIB,
        metadata={"env": "QWEN_MOCK_MAX_BODY_BYTES", "parse": int,
                  "help": "largest request body accepted; larger ones get 413 without being read"},
    )
    modelverse_b64_style: str = field(
        default="data-uri",
        metadata={"env": "QWEN_MOCK_MODELVERSE_B64", "parse": str, "choices": ("data-uri", "plain"),
                  "help": "modelverse b64_json as a data:image/png;base64, URI (as its document shows) "
                          "or plain base64 (as OpenAI sends it)"},
    )
    url_secret: str = field(
        default=DEFAULT_URL_SECRET,
        metadata={"env": "QWEN_MOCK_URL_SECRET", "parse": str,
                  "help": "key that signs image links; mocks sharing it serve each other's links"},
    )
    fetch_hosts: frozenset[str] = field(
        default=frozenset(),
        metadata={"env": "QWEN_MOCK_FETCH_HOSTS", "parse": lambda text: frozenset(h.lower() for h in _keys(text)),
                  "help": "comma-separated hosts whose http(s) image URLs the mock may download (no redirects, "
                          "10 MB, 10 s); empty (the default) never fetches a URL from a request"},
    )
    render_cache_bytes: int = field(
        default=64 * MIB,
        metadata={"env": "QWEN_MOCK_RENDER_CACHE_BYTES", "parse": int,
                  "help": "memory for recently rendered PNGs, so fetching a link twice renders once"},
    )
    url_lifetime: int | None = field(
        default=None,
        metadata={"env": "QWEN_MOCK_URL_LIFETIME", "parse": int,
                  "help": "seconds an image link stays valid (default: the provider's, 24 h for powertokens "
                          "and 7 days for modelverse)"},
    )
    latency: tuple[int, int] = field(
        default=(0, 0),
        metadata={"env": "QWEN_MOCK_LATENCY", "parse": parse_latency,
                  "help": "time the edit endpoints take to answer, in ms: fixed (250) or a range (100-400) "
                          "drawn by a generator seeded with --latency-seed"},
    )
    latency_seed: int = field(
        default=0,
        metadata={"env": "QWEN_MOCK_LATENCY_SEED", "parse": int,
                  "help": "seed of the latency range's generator, so a run's delays repeat"},
    )
    chaos_rate: float = field(
        default=0.0,
        metadata={"env": "QWEN_MOCK_CHAOS_RATE", "parse": float,
                  "help": "share of edit calls (0-1) failed at random with one of --chaos-faults, for soak tests"},
    )
    chaos_seed: int = field(
        default=0,
        metadata={"env": "QWEN_MOCK_CHAOS_SEED", "parse": int,
                  "help": "seed of chaos's generator: the same seed fails the same calls, run to run"},
    )
    chaos_faults: tuple[str, ...] = field(
        default=DEFAULT_CHAOS_FAULTS,
        metadata={"env": "QWEN_MOCK_CHAOS_FAULTS", "parse": _names,
                  "help": "comma-separated faults chaos picks from (default: " + ",".join(DEFAULT_CHAOS_FAULTS) + ")"},
    )
    retry_after_ms: int = field(
        default=1000,
        metadata={"env": "QWEN_MOCK_RETRY_AFTER_MS", "parse": int,
                  "help": "delay a rate_limit or overloaded fault asks for (Retry-After, retry-after-ms) "
                          "unless the fault names its own"},
    )
    journal_cap: int = field(
        default=1000,
        metadata={"env": "QWEN_MOCK_JOURNAL_CAP", "parse": int,
                  "help": "requests the journal (GET /__mock/requests) keeps, the oldest dropped first; 0 turns it off"},
    )
    disable_admin: bool = field(
        default=False,
        metadata={"env": "QWEN_MOCK_DISABLE_ADMIN", "parse": _flag,
                  "help": "no /__mock/ endpoints (scenarios, journal) and no journal, for a mock exposed "
                          "beyond your machine"},
    )
    admin_token: str | None = field(
        default=None,
        metadata={"env": "QWEN_MOCK_ADMIN_TOKEN", "parse": str,
                  "help": "token the /__mock/ endpoints require (Authorization: Bearer or X-Mock-Admin-Token)"},
    )
    workers: int = field(
        default=1,
        metadata={"env": "QWEN_MOCK_WORKERS", "parse": int,
                  "help": "uvicorn worker processes; links work across them, scenarios and the journal are "
                          "per worker"},
    )
    config: str | None = field(
        default=None,
        metadata={"env": "QWEN_MOCK_CONFIG", "parse": str,
                  "help": "TOML file of settings, named as these flags are (api_keys = [...], latency = "
                          "\"100-400\"); flags and environment variables override it"},
    )

    def __post_init__(self) -> None:
        if self.modelverse_b64_style not in ("data-uri", "plain"):
            raise ValueError(f"modelverse_b64_style must be data-uri or plain, not {self.modelverse_b64_style!r}")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        self._check_mock_controls()

    def _check_mock_controls(self) -> None:
        check_latency(self.latency)
        if not 0 <= self.chaos_rate <= 1:
            raise ValueError(f"chaos_rate must be between 0 and 1, not {self.chaos_rate}")
        unknown = sorted(set(self.chaos_faults) - FAULT_NAMES)
        if unknown:
            raise ValueError(f"chaos_faults: unknown fault(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(FAULT_NAMES))}")
        for name in ("retry_after_ms", "journal_cap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.url_lifetime is not None and self.url_lifetime < 0:
            raise ValueError("url_lifetime must not be negative")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")

    def now(self) -> int:
        return self.frozen_time if self.frozen_time is not None else int(time.time())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``QWEN_MOCK_*`` variables over the config file they (or an override)
        name; explicit overrides (CLI flags) win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config = overrides.get("config") or environ.get("QWEN_MOCK_CONFIG")
        if config:
            values.update(read_config(config, fields(cls)))
        for f in fields(cls):
            name = f.metadata["env"]
            if name in environ and environ[name] != "":
                try:
                    values[f.name] = f.metadata["parse"](environ[name])
                except ValueError as error:
                    raise ValueError(f"{name} (--{f.name.replace('_', '-')}): {error}") from None
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

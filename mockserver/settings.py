"""What a user can set: from CLI flags, or ``QWEN_MOCK_*`` environment variables."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MIB = 1024 * 1024

# Signing key for image links. Links are signed so that any mock process (another worker,
# or the same one after a restart) can serve a link it never saw; the key is not a secret
# worth protecting in a mock, but can be set so two deployments do not accept each other's.
DEFAULT_URL_SECRET = "qwen-image-mock"


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _keys(text: str) -> frozenset[str]:
    return frozenset(key.strip() for key in text.split(",") if key.strip())


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
    render_cache_bytes: int = field(
        default=64 * MIB,
        metadata={"env": "QWEN_MOCK_RENDER_CACHE_BYTES", "parse": int,
                  "help": "memory for recently rendered PNGs, so fetching a link twice renders once"},
    )

    def __post_init__(self) -> None:
        if self.modelverse_b64_style not in ("data-uri", "plain"):
            raise ValueError(f"modelverse_b64_style must be data-uri or plain, not {self.modelverse_b64_style!r}")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")

    def now(self) -> int:
        return self.frozen_time if self.frozen_time is not None else int(time.time())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``QWEN_MOCK_*`` variables; explicit overrides (CLI flags) win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in environ and environ[name] != "":
                values[f.name] = f.metadata["parse"](environ[name])
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

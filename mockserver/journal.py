"""The request journal: what the mock received, for a test to assert on what its client sent.

A ring buffer with a cap, so a long soak cannot grow memory without bound. Entries show
image data as its size and sha256 (not megabytes of base64) and credentials redacted.
Recording is cheap on purpose (the request's own header list, and its body while small, are
kept as they are); the shaping happens when someone reads the journal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "x-mock-admin-token"}
)
# Bodies larger than this are reduced when recorded, so an entry never holds image data.
EAGER_BYTES = 16 * 1024
PREVIEW_BYTES = 512
# A long string of base64 alone is image data too (modelverse takes bare base64).
BARE_BASE64 = re.compile(r"[A-Za-z0-9+/\r\n]{256,}={0,2}")
DATA_URI = re.compile(r"data:([^;,]{0,100})((?:;[^;,]{0,100}){0,4});base64,", re.IGNORECASE)


def redact_token(token: str) -> str:
    """A credential's fingerprint: enough to tell two keys apart, nothing to reuse."""
    return f"[redacted sha256:{hashlib.sha256(token.encode()).hexdigest()[:12]}]"


def redact_header(name: str, value: str) -> str:
    scheme, _, token = value.partition(" ")
    if name in ("authorization", "proxy-authorization") and token.strip():
        return f"{scheme} {redact_token(token.strip())}"
    return redact_token(value)


def image_summary(media_type: str | None, payload: str) -> dict[str, Any]:
    try:
        data = base64.b64decode(payload.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        return {"media_type": media_type, "base64_chars": len(payload), "decodes": False,
                "sha256": hashlib.sha256(payload.encode()).hexdigest()}
    return {"media_type": media_type, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def reduce_value(value: Any) -> Any:
    """``value`` with every image-data string replaced by its media type, size and sha256."""
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            match = DATA_URI.match(value)
            if match:
                return image_summary(match.group(1) or None, value[match.end():])
        elif len(value) >= 256 and BARE_BASE64.fullmatch(value):
            return image_summary(None, value)
        return value
    if isinstance(value, dict):
        return {key: reduce_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reduce_value(item) for item in value]
    return value


@dataclass(frozen=True)
class ReducedBody:
    body: Any
    preview: str | None = None  # the start of a body that is not JSON


def reduce_body(raw: bytes) -> ReducedBody:
    try:
        return ReducedBody(reduce_value(orjson.loads(raw)))
    except orjson.JSONDecodeError:
        return ReducedBody(None, raw[:PREVIEW_BYTES].decode("utf-8", "replace"))


class JournalEntry:
    __slots__ = ("id", "time", "method", "path", "query", "provider", "request_id", "headers", "body",
                 "body_bytes", "status", "fault", "fault_source", "preference_applied", "latency_ms",
                 "duration_ms")

    def __init__(self, time: float, scope: dict[str, Any], provider: str | None, request_id: str | None) -> None:
        self.id = 0
        self.time = time
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.provider = provider
        self.request_id = request_id
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        self.body: bytes | ReducedBody | None = None
        self.body_bytes = 0
        self.status: int | None = None
        self.fault: str | None = None
        self.fault_source: str | None = None
        self.preference_applied: str | None = None
        self.latency_ms = 0
        self.duration_ms = 0.0

    def set_body(self, raw: bytes, size: int) -> None:
        self.body_bytes = size
        self.body = raw if size <= EAGER_BYTES else reduce_body(raw)

    @property
    def session(self) -> str | None:
        for name, value in self.headers:
            if name == b"x-mock-session":
                return value.decode("latin-1")
        return None

    def as_dict(self, worker: int) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for raw_name, raw_value in self.headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name in CREDENTIAL_HEADERS:
                value = redact_header(name, value)
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = self.body
        if isinstance(body, bytes):
            body = reduce_body(body) if body else None
        return {
            "id": self.id,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "query": self.query.decode("latin-1"),
            "provider": self.provider,
            "status": self.status,
            "request_id": self.request_id,
            "session": self.session,
            "headers": headers,
            "body": body.body if body else None,
            "body_preview": body.preview if body else None,
            "body_bytes": self.body_bytes,
            "fault": self.fault,
            "fault_source": self.fault_source,
            "preference_applied": self.preference_applied,
            "latency_ms": self.latency_ms,
            "duration_ms": self.duration_ms,
            "worker": worker,
        }


class Journal:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.worker = os.getpid()  # the process recording: with several workers, each has its own journal
        self._entries: deque[JournalEntry] = deque(maxlen=cap)
        self._recorded = 0  # ever, so ids keep increasing across clears
        self._since_clear = 0

    def record(self, entry: JournalEntry) -> None:
        self._recorded += 1
        self._since_clear += 1
        entry.id = self._recorded
        self._entries.append(entry)

    @property
    def dropped(self) -> int:
        """Entries pushed out by the cap since the journal was last cleared."""
        return self._since_clear - len(self._entries)

    def entries(self, provider: str | None = None, session: str | None = None, limit: int | None = None
                ) -> list[dict[str, Any]]:
        """Oldest first; ``limit`` keeps the most recent."""
        chosen = [
            e for e in self._entries
            if (provider is None or e.provider == provider) and (session is None or e.session == session)
        ]
        if limit is not None:
            chosen = chosen[-limit:] if limit else []
        return [entry.as_dict(self.worker) for entry in chosen]

    def clear(self) -> int:
        cleared = len(self._entries)
        self._entries.clear()
        self._since_clear = 0
        return cleared

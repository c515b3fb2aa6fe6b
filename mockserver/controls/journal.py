"""The request journal: what the mock received, for a test to assert on what its client sent.

Bounded twice: in entries (a cap) and in bytes (what the entries hold), the oldest dropped
first, so neither a long soak nor a few huge requests can grow memory without bound. Entries
show image data as its media type, size and sha256 (not megabytes of base64), strings and
header values past ``STRING_LIMIT`` characters cut with a marker saying how much was cut,
values nested past ``DEPTH_LIMIT`` levels replaced by a marker, binary bodies by their size
and hash, and credentials redacted. Recording is cheap on purpose (the request's own header
list, and its body while small, are kept as they are); the shaping of small bodies happens
when someone reads the journal.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import deque
from dataclasses import dataclass
from itertools import chain
from typing import Any

import orjson

from ..core.formats import describe_image_string

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "x-mock-admin-token"}
)
# Bodies larger than this are reduced when recorded, so an entry never holds image data.
EAGER_BYTES = 16 * 1024
# Characters kept of one string or header value (other mocks cut at tens of KB too).
STRING_LIMIT = 16 * 1024
DEPTH_LIMIT = 32
# A reduced body larger than this is kept as the start of its JSON text.
BODY_LIMIT = 256 * 1024
PREVIEW_CHARS = 512
# What an entry costs beyond the bytes of its strings: the entry, its lists and tuples.
ENTRY_OVERHEAD = 1024
# Text a person can read in a preview: no control characters but tab and newlines.
PRINTABLE = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*")


def truncated(text: str, limit: int = STRING_LIMIT) -> str:
    if len(text) <= limit:
        return text
    # An ASCII marker: header values are Latin-1.
    return f"{text[:limit]}...[truncated {len(text) - limit} characters]"


def redact_token(token: str) -> str:
    """A credential's fingerprint: enough to tell two keys apart, nothing to reuse."""
    return f"[redacted sha256:{hashlib.sha256(token.encode()).hexdigest()[:12]}]"


def redact_header(name: str, value: str) -> str:
    """``<scheme> [redacted ...]`` for an Authorization value (any scheme: Bearer, Basic...)."""
    scheme, _, credentials = value.partition(" ")
    if name in ("authorization", "proxy-authorization") and credentials.strip():
        return f"{scheme} {redact_token(credentials.strip())}"
    return redact_token(value)


def reduce_value(value: Any, depth: int = 0) -> Any:
    """``value`` with image data replaced by its summary, long strings cut, and anything
    nested deeper than ``DEPTH_LIMIT`` replaced by a marker (so it can always be encoded)."""
    if isinstance(value, str):
        summary = describe_image_string(value)
        return summary if summary is not None else truncated(value)
    if isinstance(value, dict | list) and depth >= DEPTH_LIMIT:
        return f"...[nested deeper than {DEPTH_LIMIT} levels: cut]"
    if isinstance(value, dict):
        return {truncated(key): reduce_value(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [reduce_value(item, depth + 1) for item in value]
    return value


@dataclass(frozen=True)
class ReducedBody:
    body: Any
    preview: str | None = None  # for a body that is not JSON, or too large once reduced
    size: int = 0  # bytes it holds, about


def reduce_body(raw: bytes) -> ReducedBody:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ReducedBody(None, describe_non_json(raw), PREVIEW_CHARS)
    body = reduce_value(parsed)
    encoded = orjson.dumps(body)
    if len(encoded) > BODY_LIMIT:
        text = encoded[:PREVIEW_CHARS].decode("utf-8", "ignore")
        return ReducedBody(None, f"{text}...[JSON body of {len(encoded)} bytes once reduced: cut]", PREVIEW_CHARS)
    return ReducedBody(body, None, len(encoded))


def describe_non_json(raw: bytes) -> str:
    """The start of a text body; never the bytes of a binary one (an image, a multipart form)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and PRINTABLE.fullmatch(text):
        return truncated(text, PREVIEW_CHARS)
    return f"[{len(raw)} bytes, not text: sha256 {hashlib.sha256(raw).hexdigest()}]"


def _bounded_headers(headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], int]:
    """The headers to keep (the request's own list unless a value is too long) and their size."""
    size = sum(map(len, chain.from_iterable(headers)))
    if size > STRING_LIMIT and any(len(value) > STRING_LIMIT for _, value in headers):
        headers = [(name, truncated(value.decode("latin-1")).encode("latin-1")) for name, value in headers]
        size = sum(map(len, chain.from_iterable(headers)))
    return headers, size


class JournalEntry:
    __slots__ = ("id", "time", "method", "path", "query", "provider", "request_id", "headers", "body",
                 "body_bytes", "status", "fault", "fault_source", "preference_applied", "latency_ms",
                 "duration_ms", "size")

    def __init__(self, time: float, scope: dict[str, Any], provider: str | None, request_id: str | None) -> None:
        self.id = 0
        self.time = time
        self.method: str = scope["method"]
        self.path: str = truncated(scope["path"])
        query = scope.get("query_string", b"")
        self.query = truncated(query.decode("latin-1")) if query else ""
        self.provider = provider
        self.request_id = request_id
        self.headers, header_bytes = _bounded_headers(scope["headers"])
        self.body: bytes | ReducedBody | None = None
        self.body_bytes = 0
        self.status: int | None = None
        self.fault: str | None = None
        self.fault_source: str | None = None
        self.preference_applied: str | None = None
        self.latency_ms = 0
        self.duration_ms = 0.0
        self.size = ENTRY_OVERHEAD + len(self.path) + len(self.query) + header_bytes

    def set_body(self, raw: bytes, size: int) -> None:
        """Keep the body (``raw`` empty when it was not read whole): a small one as it is,
        a larger one reduced now."""
        self.body_bytes = size
        if size <= EAGER_BYTES:
            self.body = raw
            self.size += len(raw)
        else:
            self.body = reduce_body(raw)
            self.size += self.body.size

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
            "query": self.query,
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
    def __init__(self, cap: int, max_bytes: int) -> None:
        self.cap = cap
        self.max_bytes = max_bytes
        self.worker = os.getpid()  # the process recording: with several workers, each has its own journal
        self._entries: deque[JournalEntry] = deque()
        self.size = 0  # bytes the entries hold, about
        self._recorded = 0  # ever, so ids keep increasing across clears
        self._since_clear = 0

    def record(self, entry: JournalEntry) -> None:
        self._recorded += 1
        self._since_clear += 1
        entry.id = self._recorded
        self._entries.append(entry)
        self.size += entry.size
        while len(self._entries) > self.cap or (self.size > self.max_bytes and self._entries):
            self.size -= self._entries.popleft().size

    @property
    def dropped(self) -> int:
        """Entries pushed out by the cap or the byte bound since the journal was last cleared."""
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
        self.size = 0
        self._since_clear = 0
        return cleared

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
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

import orjson

from ..core.formats import describe_image_string
from .previews import Previewer, PreviewStore, decode_image_string

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "x-mock-admin-token"}
)
# Bodies larger than this are reduced when recorded, so an entry never holds image data.
EAGER_BYTES = 16 * 1024
# Characters kept of one string or header value (other mocks cut at tens of KB too).
STRING_LIMIT = 16 * 1024
DEPTH_LIMIT = 32
# An answer's body larger than this is recorded by its size only (the mock's largest, six
# 2048x2048 images as base64, is a few hundred kilobytes).
ANSWER_LIMIT = 8 * 1024 * 1024
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


def reduce_value(value: Any, depth: int = 0, previews: Previewer | None = None) -> Any:
    """``value`` with image data replaced by its summary, long strings cut, and anything
    nested deeper than ``DEPTH_LIMIT`` replaced by a marker (so it can always be encoded).
    With ``previews``, each image leaves its preview there before its data goes."""
    if isinstance(value, str):
        summary = describe_image_string(value)
        if summary is None:
            return truncated(value)
        if previews is not None and "sha256" in summary and previews.get(summary["sha256"]) is None:
            data = decode_image_string(value)
            if data is not None:
                previews.keep(summary["sha256"], data)
        return summary
    if isinstance(value, dict | list) and depth >= DEPTH_LIMIT:
        return f"...[nested deeper than {DEPTH_LIMIT} levels: cut]"
    if isinstance(value, dict):
        return {truncated(key): reduce_value(item, depth + 1, previews) for key, item in value.items()}
    if isinstance(value, list):
        return [reduce_value(item, depth + 1, previews) for item in value]
    return value


IMAGE_SUMMARY_KEYS = (frozenset({"media_type", "bytes", "sha256"}),
                      frozenset({"media_type", "base64_chars", "decodes", "sha256"}))


def is_image_summary(value: Any) -> bool:
    """Whether a value of a reduced body is what image data was reduced to."""
    return isinstance(value, dict) and value.keys() in IMAGE_SUMMARY_KEYS


@dataclass(frozen=True)
class ReducedBody:
    body: Any
    preview: str | None = None  # for a body that is not JSON, or too large once reduced
    size: int = 0  # bytes it holds, about


def reduce_body(raw: bytes, previews: Previewer | None = None) -> ReducedBody:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ReducedBody(None, describe_non_json(raw), PREVIEW_CHARS)
    body = reduce_value(parsed, previews=previews)
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
                 "duration_ms", "size", "response_headers", "response", "response_bytes")

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
        # The answer: its headers as sent (the mock's own, bounded by it; the front layer
        # sets them and adds their size), its JSON body (None for another type, or one past
        # the capture limit) and that body's size.
        self.response_headers: list[tuple[bytes, bytes]] | tuple[()] = ()
        self.response: bytes | ReducedBody | None = None
        self.response_bytes = 0

    def set_body(self, raw: bytes, size: int, previews: Previewer | None = None) -> None:
        """Keep the body (``raw`` empty when it was not read whole): a small one as it is,
        a larger one reduced now."""
        self.body_bytes = size
        if size <= EAGER_BYTES:
            self.body = raw
            self.size += len(raw)
        else:
            self.body = reduce_body(raw, previews)
            self.size += self.body.size

    def set_response(self, raw: bytes | None, size: int, previews: Previewer | None = None) -> None:
        """Keep the answer's body (``raw`` None when it is not kept), as the request's: a
        small one as it is, a larger one reduced now, leaving previews of its images."""
        self.response_bytes = size
        if raw is None:
            return
        if len(raw) <= EAGER_BYTES:
            self.response = raw
            self.size += len(raw)
        else:
            self.response = reduce_body(raw, previews)
            self.size += self.response.size

    @property
    def session(self) -> str | None:
        for name, value in self.headers:
            if name == b"x-mock-session":
                return value.decode("latin-1")
        return None

    def header_dict(self) -> dict[str, str]:
        """The request's headers by lower-case name, credentials redacted, repeats joined."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in self.headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name in CREDENTIAL_HEADERS:
                value = redact_header(name, value)
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    def shaped_body(self, previews: Previewer | None = None) -> ReducedBody | None:
        """The request body as the journal shows it (with ``previews``, leaving those of its
        images there)."""
        return _shaped(self.body, previews)

    def shaped_response(self, previews: Previewer | None = None) -> ReducedBody | None:
        return _shaped(self.response, previews)

    def as_dict(self, worker: int) -> dict[str, Any]:
        body = self.shaped_body()
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
            "headers": self.header_dict(),
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


def _shaped(body: bytes | ReducedBody | None, previews: Previewer | None) -> ReducedBody | None:
    if isinstance(body, bytes):
        return reduce_body(body, previews) if body else None
    return body


# The share of the journal's byte budget its image previews may take.
PREVIEW_SHARE = 4


class Journal:
    def __init__(self, cap: int, max_bytes: int) -> None:
        self.cap = cap
        self.max_bytes = max_bytes
        self.worker = os.getpid()  # the process recording: with several workers, each has its own journal
        self._entries: deque[JournalEntry] = deque()
        self.size = 0  # bytes the entries hold, about
        self.previews = PreviewStore(max_bytes // PREVIEW_SHARE)
        self._recorded = 0  # ever, so ids keep increasing across clears
        self._since_clear = 0
        self.clears = 0  # how many times it was emptied, for watchers to notice
        self._watchers: set[Callable[[], None]] = set()

    def record(self, entry: JournalEntry) -> None:
        self._recorded += 1
        self._since_clear += 1
        entry.id = self._recorded
        self._entries.append(entry)
        self.size += entry.size
        # Previews are added from worker threads, within their own bound; entries make room.
        while len(self._entries) > self.cap or (self.size + self.previews.size > self.max_bytes and self._entries):
            self.size -= self._entries.popleft().size
        if self._watchers:
            self.wake()

    @property
    def held(self) -> int:
        """How many entries it holds now."""
        return len(self._entries)

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (on the event loop, cheaply: it should only set a flag) whenever an
        entry is recorded or the journal is emptied; returns what stops it."""
        self._watchers.add(wake)
        return lambda: self._watchers.discard(wake)

    def wake(self) -> None:
        for wake in list(self._watchers):
            wake()

    def previewer(self) -> Previewer:
        """How recording leaves previews: thumbnails only while someone watches (a page has
        them made when it reads); with nobody watching, recording costs what it did."""
        return self.previews if self._watchers else self.previews.without_thumbnails

    @property
    def last_id(self) -> int:
        """The id of the latest entry ever recorded (0 before the first)."""
        return self._recorded

    def newer_than(self, entry_id: int) -> list[JournalEntry]:
        """The entries still held whose id is above ``entry_id``, oldest first: ids are
        consecutive, so they are the last ``last_id - entry_id``, read from the end."""
        count = min(len(self._entries), max(0, self._recorded - entry_id))
        return list(islice(reversed(self._entries), count))[::-1]

    def latest(self, count: int) -> list[JournalEntry]:
        """At most the ``count`` most recent entries, newest first."""
        return list(islice(reversed(self._entries), count))

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
        self.previews.clear()
        self.clears += 1
        if self._watchers:
            self.wake()
        return cleared

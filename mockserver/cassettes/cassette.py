"""A cassette on disk: recorded exchanges a person can read and edit.

    DIR/cassette.json                        {"format": "qwen-image-mock cassette", "version": 1, "upstream": ...}
    DIR/exchanges/0001-powertokens-200.json  one exchange: the request's canonical form and the answer
    DIR/images/<sha256>.png                  each image once, named by the sha256 of its bytes

Exchange files are pretty-printed JSON with sorted keys, replayed in the order of their
names. Loading checks everything a person may have got wrong (and everything a hostile
file could try) before the mock starts, and says which file and which field: a cassette
that loads never fails a request later. Image files are found by their validated names
only (64 hex digits and a known extension), read from regular files inside ``images/``
(no links), and checked against their hash.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.formats import NotJson, load_json
from .canonical import HEX64, MarkerError, check_form, request_key, sha256

FORMAT = "qwen-image-mock cassette"
VERSION = 1
MANIFEST = "cassette.json"
EXCHANGES = "exchanges"
IMAGES = "images"
EXCHANGE_NAME = re.compile(r"(?P<number>[0-9]{4,9})(?:-[A-Za-z0-9_.-]{0,100})?\.json")
EXTENSIONS = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
              "bmp": "image/bmp", "tiff": "image/tiff", "bin": "application/octet-stream"}
BLOB_NAME = re.compile(r"(?P<sha>[0-9a-f]{64})\.(?P<ext>" + "|".join(EXTENSIONS) + ")")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CREDENTIALS = frozenset({"none", "bearer", "malformed"})
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,100}")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]{0,4096}")
# Headers of an answer a replay gives back; the others (a cookie, the server's date, the
# framing) are not recorded. ``x-request-id`` is kept for the record: a replay has its own.
ANSWER_HEADERS = frozenset({"content-type", "retry-after", "retry-after-ms", "x-should-retry", "x-request-id",
                            "www-authenticate"})
ANSWER_HEADER_PREFIXES = ("x-ratelimit-", "ratelimit-")
NOT_REPLAYED = frozenset({"x-request-id", "content-length", "transfer-encoding", "connection"})
EXCHANGE_KEYS = {"provider", "recorded_at", "request", "response"}
REQUEST_KEYS = {"method", "path", "query", "credentials", "headers", "body"}
RESPONSE_KEYS = {"status", "headers", "body"}
MAX_EXCHANGES = 100_000


class CassetteError(ValueError):
    """A cassette that cannot be used, with the file and the field at fault."""


def answer_header_kept(name: str) -> bool:
    name = name.lower()
    return name in ANSWER_HEADERS or name.startswith(ANSWER_HEADER_PREFIXES)


def extension_of(data: bytes) -> str:
    """The file extension of image bytes, from their first bytes (``bin`` if no known format)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    return "bin"


@dataclass(frozen=True)
class Recorded:
    """One recorded exchange, as loaded and checked."""

    name: str  # its file name, exchanges/<name>
    provider: str
    recorded_at: int | None
    method: str
    path: str
    query: str
    credentials: str
    headers: dict[str, str]
    body: Any  # canonical
    status: int
    response_headers: dict[str, str]
    response_body: Any  # canonical
    key: str = ""
    images: frozenset[str] = frozenset()

    @property
    def request_form(self) -> dict[str, Any]:
        """The request as a near miss compares it."""
        return {"method": self.method, "path": self.path, "query": self.query, "credentials": self.credentials,
                "headers": self.headers, "body": self.body}


@dataclass(frozen=True)
class Blob:
    data: bytes
    extension: str

    @property
    def media_type(self) -> str:
        return EXTENSIONS[self.extension]


@dataclass
class Cassette:
    directory: Path
    upstream: str | None
    exchanges: list[Recorded] = field(default_factory=list)
    blobs: dict[str, Blob] = field(default_factory=dict)
    size: int = 0

    def blob(self, digest: str) -> bytes:
        return self.blobs[digest].data

    def providers(self) -> list[str]:
        return sorted({exchange.provider for exchange in self.exchanges})


# --------------------------------------------------------------------------- loading


def _regular_file(path: Path, what: str, limit: int) -> int:
    """The size of a regular file (not a link, not a device), within ``limit``."""
    try:
        info = os.lstat(path)
    except OSError as error:
        raise CassetteError(f"{what}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CassetteError(f"{what}: not a regular file (links and special files are refused)")
    if info.st_size > limit:
        raise CassetteError(f"{what}: {info.st_size:,} bytes, over the limit of {limit:,} "
                            "(--cassette-max-exchange-bytes)")
    return info.st_size


def _read(path: Path, what: str, limit: int) -> bytes:
    size = _regular_file(path, what, limit)
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    if len(data) != size or len(data) > limit:
        raise CassetteError(f"{what}: changed while being read")
    return data


def _json_file(path: Path, what: str, limit: int) -> Any:
    try:
        return load_json(_read(path, what, limit))
    except NotJson as error:
        raise CassetteError(f"{what}: not valid JSON: {error}") from None


def read_manifest(directory: Path) -> dict[str, Any]:
    manifest = _json_file(directory / MANIFEST, f"{directory / MANIFEST}", 64 * 1024)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CassetteError(f"{directory / MANIFEST}: not a qwen-image-mock cassette (\"format\": \"{FORMAT}\")")
    if manifest.get("version") != VERSION:
        raise CassetteError(f"{directory / MANIFEST}: version {manifest.get('version')!r}; this qwen-image-mock "
                            f"reads version {VERSION}")
    upstream = manifest.get("upstream")
    if upstream is not None and not isinstance(upstream, str):
        raise CassetteError(f"{directory / MANIFEST}: \"upstream\" must be a string")
    return manifest


def exchange_files(directory: Path) -> list[Path]:
    """The exchange files of a cassette, in replay order (their names'); other names refused."""
    folder = directory / EXCHANGES
    if not folder.is_dir() or folder.is_symlink():
        raise CassetteError(f"{folder}: missing (a cassette keeps its exchanges there)")
    files = []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue  # an editor's swap file, .gitkeep
        match = EXCHANGE_NAME.fullmatch(entry.name)
        if match is None:
            raise CassetteError(f"{entry}: not an exchange file (names are NNNN-<anything>.json, replayed in order)")
        files.append((int(match["number"]), entry.name, entry))
    if len(files) > MAX_EXCHANGES:
        raise CassetteError(f"{folder}: {len(files):,} exchanges, more than {MAX_EXCHANGES:,}")
    return [path for _, _, path in sorted(files)]


def blob_files(directory: Path) -> dict[str, Path]:
    """sha256 -> the image file of that name."""
    folder = directory / IMAGES
    if not folder.exists():
        return {}
    if not folder.is_dir() or folder.is_symlink():
        raise CassetteError(f"{folder}: not a directory")
    found: dict[str, Path] = {}
    for entry in folder.iterdir():
        match = BLOB_NAME.fullmatch(entry.name)
        if match is None:
            continue  # not referred to by any exchange, so never read
        if match["sha"] in found:
            raise CassetteError(f"{entry}: a second file for image {match['sha']}")
        found[match["sha"]] = entry
    return found


def _expect(mapping: Any, keys: set[str], required: set[str], what: str) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise CassetteError(f"{what}: expected an object")
    unknown = sorted(set(mapping) - keys)
    if unknown:
        raise CassetteError(f"{what}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(keys))})")
    missing = sorted(required - set(mapping))
    if missing:
        raise CassetteError(f"{what}: missing field {missing[0]!r}")
    return mapping


def _headers(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise CassetteError(f"{what}: expected an object of header names and values")
    for name, text in value.items():
        if not HEADER_NAME.fullmatch(name):
            raise CassetteError(f"{what}: {name!r} is not a lower-case header name")
        if not isinstance(text, str) or not HEADER_VALUE.fullmatch(text):
            raise CassetteError(f"{what}.{name}: expected a header value (text without line breaks, "
                                "at most 4096 characters)")
        if any(ord(char) > 0xFF for char in text):
            raise CassetteError(f"{what}.{name}: a header value must be Latin-1 text")
    return value


def parse_exchange(data: Any, name: str, paths: Mapping[str, str], vary: Mapping[str, tuple[str, ...]]) -> Recorded:
    """One exchange file's content, checked; ``paths``: each provider's endpoint."""
    what = f"{EXCHANGES}/{name}"
    top = _expect(data, EXCHANGE_KEYS, {"provider", "request", "response"}, what)
    provider = top["provider"]
    if not isinstance(provider, str) or provider not in paths:
        raise CassetteError(f"{what}.provider: {provider!r} is not a provider of this mock "
                            f"({', '.join(sorted(paths))})")
    recorded_at = top.get("recorded_at")
    if recorded_at is not None and not (type(recorded_at) is int and 0 <= recorded_at <= 10**10):
        raise CassetteError(f"{what}.recorded_at: expected a Unix time in seconds")
    request = _expect(top["request"], REQUEST_KEYS, {"method", "path", "body"}, f"{what}.request")
    method = request["method"]
    if not isinstance(method, str) or method not in METHODS:
        raise CassetteError(f"{what}.request.method: expected one of {', '.join(sorted(METHODS))}, not {method!r:.40}")
    if request["path"] != paths[provider]:
        raise CassetteError(f"{what}.request.path: {provider}'s endpoint is {paths[provider]}, "
                            f"not {str(request['path'])[:100]!r}")
    query = request.get("query", "")
    if not isinstance(query, str) or len(query) > 8192 or any(c in query for c in "\r\n#"):
        raise CassetteError(f"{what}.request.query: expected a query string (without '?')")
    credentials = request.get("credentials", "bearer")
    if not isinstance(credentials, str) or credentials not in CREDENTIALS:
        raise CassetteError(f"{what}.request.credentials: expected one of {', '.join(sorted(CREDENTIALS))} "
                            "(the form of the key, which is never recorded)")
    headers = _headers(request.get("headers", {}), f"{what}.request.headers")
    extra = sorted(set(headers) - set(vary[provider]))
    if extra:
        raise CassetteError(f"{what}.request.headers: {extra[0]!r} does not change {provider}'s answers; "
                            f"the headers that do: {', '.join(vary[provider]) or 'none'}")
    response = _expect(top["response"], RESPONSE_KEYS, {"status", "body"}, f"{what}.response")
    status = response["status"]
    if not (type(status) is int and 200 <= status <= 599):
        raise CassetteError(f"{what}.response.status: expected an HTTP status 200-599, not {status!r:.40}")
    response_headers = _headers(response.get("headers", {}), f"{what}.response.headers")
    try:
        images = check_form(request["body"], f"{what}.request.body")
        images |= check_form(response["body"], f"{what}.response.body")
    except MarkerError as error:
        raise CassetteError(str(error)) from None
    return Recorded(
        name=name, provider=provider, recorded_at=recorded_at, method=method, path=request["path"], query=query,
        credentials=credentials, headers=headers, body=request["body"], status=status,
        response_headers=response_headers, response_body=response["body"],
        key=request_key(method, request["path"], query, credentials, headers, request["body"]),
        images=frozenset(images),
    )


def load(directory: str | Path, *, paths: Mapping[str, str], vary: Mapping[str, tuple[str, ...]],
         max_bytes: int, max_exchange_bytes: int) -> Cassette:
    """The cassette in ``directory``, checked whole; ``CassetteError`` for the first problem."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CassetteError(f"{directory}: no such cassette directory")
    manifest = read_manifest(directory)
    cassette = Cassette(directory, manifest.get("upstream"))
    blobs = blob_files(directory)
    total = 0
    for path in exchange_files(directory):
        what = f"{EXCHANGES}/{path.name}"
        file_size = _regular_file(path, str(path), max_exchange_bytes)
        data = _json_file(path, f"{directory / what}", max_exchange_bytes)
        try:
            exchange = parse_exchange(data, path.name, paths, vary)
        except CassetteError as error:
            raise CassetteError(f"{directory}: {error}") from None
        size = file_size
        total += file_size
        for digest in sorted(exchange.images):
            if digest not in cassette.blobs:
                cassette.blobs[digest] = _load_blob(directory, blobs, digest, what, max_exchange_bytes)
                total += len(cassette.blobs[digest].data)
            size += len(cassette.blobs[digest].data)
        if size > max_exchange_bytes:
            raise CassetteError(f"{directory / what}: {size:,} bytes with its images, over the limit of "
                                f"{max_exchange_bytes:,} (--cassette-max-exchange-bytes)")
        if total > max_bytes:
            raise CassetteError(f"{directory}: over the limit of {max_bytes:,} bytes (--cassette-max-bytes) "
                                f"by {what}")
        cassette.exchanges.append(exchange)
    cassette.size = total
    return cassette


def _load_blob(directory: Path, blobs: dict[str, Path], digest: str, what: str, limit: int) -> Blob:
    path = blobs.get(digest)
    if path is None:
        raise CassetteError(f"{directory / what}: refers to image {digest}, which is not in "
                            f"{directory / IMAGES}/ (as {digest}.png or another extension)")
    data = _read(path, str(path), limit)
    if sha256(data) != digest:
        raise CassetteError(f"{path}: its bytes do not have the sha256 its name says (edited?)")
    extension = BLOB_NAME.fullmatch(path.name)["ext"]  # type: ignore[index]
    return Blob(data, extension)


# --------------------------------------------------------------------------- writing


class TooLarge(Exception):
    """An exchange the caps keep out of the cassette (it is relayed all the same)."""


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would keep a cassette from the rest of a team
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def dumps(value: Any) -> bytes:
    """How a cassette writes JSON: pretty-printed, keys sorted, UTF-8."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


class CassetteWriter:
    """Adds exchanges to a cassette directory (made if missing), within its caps. Not
    thread-safe: the recorder calls it under one lock."""

    def __init__(self, directory: str | Path, upstream: str, *, max_bytes: int, max_exchange_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_exchange_bytes = max_exchange_bytes
        (self.directory / EXCHANGES).mkdir(parents=True, exist_ok=True)
        (self.directory / IMAGES).mkdir(exist_ok=True)
        manifest_path = self.directory / MANIFEST
        if manifest_path.exists():
            manifest = read_manifest(self.directory)
            if manifest.get("upstream") not in (None, upstream):
                raise CassetteError(f"{self.directory} was recorded from {manifest['upstream']}, not {upstream}: "
                                    "record into another directory")
        else:
            _write_atomically(manifest_path, dumps({"format": FORMAT, "version": VERSION, "upstream": upstream}))
        self.blobs = {digest: path.name for digest, path in blob_files(self.directory).items()}
        files = exchange_files(self.directory)
        self.number = max((int(EXCHANGE_NAME.fullmatch(p.name)["number"]) for p in files), default=0)  # type: ignore[index]
        self.size = sum(_regular_file(p, str(p), 2**62) for p in files)
        self.size += sum(_regular_file(self.directory / IMAGES / name, name, 2**62) for name in self.blobs.values())

    def write(self, exchange: dict[str, Any], blobs: Mapping[str, bytes]) -> str:
        """Write one exchange and its new images; its file name. ``TooLarge`` (nothing
        written) past a cap."""
        for digest in blobs:
            if not HEX64.fullmatch(digest):
                raise ValueError(f"not a sha256: {digest!r}")
        text = dumps(exchange)
        own = len(text) + sum(len(data) for data in blobs.values())
        if own > self.max_exchange_bytes:
            raise TooLarge(f"the exchange is {own:,} bytes with its images, over --cassette-max-exchange-bytes "
                           f"({self.max_exchange_bytes:,})")
        new = {digest: data for digest, data in blobs.items() if digest not in self.blobs}
        added = len(text) + sum(len(data) for data in new.values())
        if self.size + added > self.max_bytes:
            raise TooLarge(f"the cassette would grow to {self.size + added:,} bytes, over --cassette-max-bytes "
                           f"({self.max_bytes:,})")
        for digest, data in sorted(new.items()):
            name = f"{digest}.{extension_of(data)}"
            _write_atomically(self.directory / IMAGES / name, data)
            self.blobs[digest] = name
        self.number += 1
        status = exchange["response"]["status"]
        name = f"{self.number:04d}-{exchange['provider']}-{status}.json"
        _write_atomically(self.directory / EXCHANGES / name, text)
        self.size += added
        return name

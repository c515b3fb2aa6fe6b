"""The canonical form of a request or an answer, as a cassette stores it and matches on it.

A body is kept as its JSON value, with three changes:

* inline image data (a ``data:...;base64,`` URI anywhere, or bare base64 where the schema
  marks an image, or in an answer's image list) becomes ``{"$image": "<sha256>", "prefix":
  "<the text before the base64>"}``, its bytes stored once under their sha256;
* an image link in an answer becomes ``{"$image": "<sha256>", "link": "<the URL without its
  query>"}`` (``"$image": null`` and ``"unavailable": "<why>"`` where it could not be
  downloaded);
* an object key that begins with ``$`` gets one more (``"$ref"`` -> ``"$$ref"``), so that a
  marker is always one of the above and any JSON round-trips.

A body that is not JSON is ``{"$text": "..."}`` (UTF-8) or ``{"$bytes": "<sha256>"}``.

Only canonical base64 (what ``base64.b64encode`` writes) is taken for image data, so every
canonical form gives back exactly the text it came from. A request's match key is the
sha256 of its canonical JSON: method, path, query, the form of its credentials (``none``,
``bearer``, ``malformed``; never the key), the headers its provider varies on, and the
whole body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from ..core.errors import ApiError
from ..core.formats import NotJson, bearer_token, data_uri, load_json
from ..http.body import check_value_count
from .shapes import Shape

MAX_DEPTH = 128  # JSON nested deeper is kept as text
MIN_BARE_BYTES = 16  # bare base64 shorter than this stays text ("abcd" is valid base64)
SECRET_MIN_CHARS = 8  # credentials shorter than this are not searched for in bodies
REDACTED = "[redacted]"
HEX64 = re.compile(r"[0-9a-f]{64}")
CREDENTIAL_PARAMETER = re.compile(r"key|token|secret|signature|sig$|password|credential|auth", re.IGNORECASE)
URL_START = re.compile(r"https?://", re.IGNORECASE)
MARKERS = ("$image", "$text", "$bytes")
SCALARS = frozenset({int, float, bool, type(None)})  # nothing to walk into

Path = tuple[str | int, ...]


class TooDeep(ValueError):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def credentials_form(authorization: str | None) -> str:
    """``none``, ``bearer`` (``Bearer <token>``) or ``malformed``: what a cassette keeps of a key."""
    if authorization is None:
        return "none"
    return "bearer" if bearer_token(authorization) is not None else "malformed"


def secrets_in(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The credentials a request carries (the token of ``Authorization``, ``X-Api-Key``...), to
    be searched for and redacted in whatever is recorded."""
    found = []
    for name, value in headers:
        if name.lower() in ("authorization", "proxy-authorization", "x-api-key", "api-key"):
            token = value.partition(" ")[2].strip() if " " in value.strip() else value.strip()
            for candidate in (token, value.strip()):
                if len(candidate) >= SECRET_MIN_CHARS:
                    found.append(candidate)
    return sorted(set(found), key=len, reverse=True)


def scrubbed_query(query: bytes, secrets: list[str]) -> str:
    """A request's query string as a cassette keeps it and matches on it: the value of a
    parameter named like a credential (``key``, ``api_key``, ``access_token``, a signature...)
    and any of ``secrets`` redacted; everything else as sent, byte for byte."""
    kept = []
    for segment in query.decode("latin-1").split("&"):
        name, equals, _ = segment.partition("=")
        if equals and CREDENTIAL_PARAMETER.search(name):
            segment = f"{name}={REDACTED}"
        kept.append(scrub(segment, secrets))
    return "&".join(kept)


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with every credential in ``secrets`` replaced, in strings and keys."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        if is_marker(value):  # hashes are not text (a key of hex digits would match inside one)
            return {k: scrub(v, secrets) if k in ("link", "unavailable", "$text") else v for k, v in value.items()}
        return {scrub(k, secrets): v if type(v) in SCALARS else scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [v if type(v) in SCALARS else scrub(v, secrets) for v in value]
    return value


def parse_json(raw: bytes) -> tuple[bool, Any]:
    """(True, value) if ``raw`` is JSON (``formats.load_json``), else (False, None). A body that
    may hold more values than the mock parses (``MAX_JSON_VALUES``) is kept as its bytes,
    unparsed."""
    try:
        check_value_count(raw)
        return True, load_json(raw)
    except (ApiError, NotJson):
        return False, None


def dump_json(value: Any) -> bytes:
    """A JSON value as compact bytes (orjson where it can: integers past 64 bits it cannot)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _canonical_base64(payload: str) -> bytes | None:
    """The bytes of ``payload`` if it is base64 exactly as ``b64encode`` writes it."""
    if not payload or len(payload) % 4:
        return None
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode("ascii") == payload else None


def inline_image(text: str, bare: bool) -> tuple[str, bytes] | None:
    """(prefix, bytes) of inline image data: a base64 data URI, or (``bare``) base64 alone."""
    uri = data_uri(text)
    if uri is not None:
        data = _canonical_base64(text[uri.payload_start:])
        return (text[:uri.payload_start], data) if data else None
    if bare and len(text) >= 24:
        data = _canonical_base64(text)
        return ("", data) if data is not None and len(data) >= MIN_BARE_BYTES else None
    return None


def strip_query(url: str) -> str:
    """A link without its query and fragment: signed URLs carry credentials there."""
    return url.split("#", 1)[0].split("?", 1)[0]


class Canonicaliser:
    """Turns bodies into canonical forms, collecting the bytes of the images they held."""

    def __init__(self, shape: Shape, blobs: dict[str, bytes] | None = None) -> None:
        self.shape = shape
        self.blobs: dict[str, bytes] = {} if blobs is None else blobs

    def _store(self, data: bytes) -> str:
        digest = sha256(data)
        self.blobs.setdefault(digest, data)
        return digest

    def raw(self, raw: bytes) -> Any:
        """A body that is not JSON (or nested too deeply to keep as JSON)."""
        try:
            return {"$text": raw.decode("utf-8")}
        except UnicodeDecodeError:
            return {"$bytes": self._store(raw)}

    def request(self, raw: bytes) -> Any:
        if not raw:
            return {"$text": ""}
        is_json, value = parse_json(raw)
        if not is_json:
            return self.raw(raw)
        try:
            return self._walk(value, (), 0, self._request_string)
        except TooDeep:
            return self.raw(raw)

    def answer(self, raw: bytes, links: Mapping[str, tuple[str | None, str]]) -> Any:
        """``links``: each image link of the answer -> (sha256 of what it served, or None, and
        the reason it could not be downloaded)."""
        if not raw:
            return {"$text": ""}
        is_json, value = parse_json(raw)
        if not is_json:
            return self.raw(raw)

        def string(text: str, path: Path) -> Any:
            if self.shape.answer_image(path):
                if URL_START.match(text):
                    digest, reason = links.get(text, (None, "not downloaded"))
                    marker: dict[str, Any] = {"$image": digest, "link": strip_query(text)}
                    if digest is None:
                        marker["unavailable"] = reason
                    return marker
                found = inline_image(text, bare=True)
            else:
                found = inline_image(text, bare=False)
            if found is None:
                return text
            return {"$image": self._store(found[1]), "prefix": found[0]}

        try:
            return self._walk(value, (), 0, string)
        except TooDeep:
            return self.raw(raw)

    def _request_string(self, text: str, path: Path) -> Any:
        found = inline_image(text, bare=self.shape.is_request_image(path))
        if found is None:
            return text
        return {"$image": self._store(found[1]), "prefix": found[0]}

    def _walk(self, value: Any, path: Path, depth: int, string: Callable[[str, Path], Any]) -> Any:
        if depth > MAX_DEPTH:
            raise TooDeep
        if isinstance(value, str):
            return string(value, path)
        if isinstance(value, dict):
            return {("$" + key if key.startswith("$") else key):
                    item if type(item) in SCALARS else self._walk(item, path + (key,), depth + 1, string)
                    for key, item in value.items()}
        if isinstance(value, list):
            return [item if type(item) in SCALARS else self._walk(item, path + (index,), depth + 1, string)
                    for index, item in enumerate(value)]
        return value


def answer_links(shape: Shape, raw: bytes) -> list[str]:
    """The image links of an answer, in order, each once: what the recorder downloads."""
    is_json, value = parse_json(raw) if raw else (False, None)
    found: list[str] = []

    def walk(node: Any, path: Path, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(node, str):
            if shape.answer_image(path) and URL_START.match(node) and node not in found:
                found.append(node)
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(item, path + (key,), depth + 1)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, path + (index,), depth + 1)

    if is_json:
        walk(value, (), 0)
    return found


# --------------------------------------------------------------------------- markers


class MarkerError(ValueError):
    """A canonical form that no canonicaliser writes (an edited cassette)."""


def is_marker(value: Any) -> bool:
    return isinstance(value, dict) and any(key.startswith("$") and not key.startswith("$$") for key in value)


def check_form(value: Any, where: str, top: bool = True, depth: int = 0) -> set[str]:
    """The image hashes a canonical form refers to; ``MarkerError`` naming the place of
    anything a canonicaliser could not have written."""
    if depth > MAX_DEPTH + 2:
        raise MarkerError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return set()
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MarkerError(f"{where}: not a JSON number")
        return set()
    if isinstance(value, list):
        found: set[str] = set()
        for index, item in enumerate(value):
            found |= check_form(item, f"{where}[{index}]", False, depth + 1)
        return found
    if not isinstance(value, dict):
        raise MarkerError(f"{where}: not a JSON value")
    if is_marker(value):
        return _check_marker(value, where, top)
    found = set()
    for key, item in value.items():
        found |= check_form(item, f"{where}.{key}", False, depth + 1)
    return found


def _check_marker(value: dict[str, Any], where: str, top: bool) -> set[str]:
    keys = set(value)
    if "$text" in keys or "$bytes" in keys:
        if not top:
            raise MarkerError(f"{where}: $text and $bytes stand for a whole body, not a value inside one")
        if keys == {"$text"} and isinstance(value["$text"], str):
            return set()
        if keys == {"$bytes"} and isinstance(value["$bytes"], str) and HEX64.fullmatch(value["$bytes"]):
            return {value["$bytes"]}
        raise MarkerError(f"{where}: a body marker is {{\"$text\": \"...\"}} or {{\"$bytes\": \"<sha256>\"}}, "
                          f"not {sorted(keys)}")
    if "$image" not in keys:
        unknown = sorted(key for key in keys if key.startswith("$") and not key.startswith("$$"))
        raise MarkerError(f"{where}: unknown marker {unknown[0]!r} (a key of the body that begins with $ is "
                          "written with $$)")
    digest = value["$image"]
    if keys == {"$image", "prefix"}:
        prefix = value["prefix"]
        if not (isinstance(digest, str) and HEX64.fullmatch(digest)):
            raise MarkerError(f"{where}.$image: expected the sha256 of an image file (64 hex digits), not {digest!r:.80}")
        if not isinstance(prefix, str) or (prefix and data_uri(prefix + "AAAA") is None) or \
                (prefix and data_uri(prefix + "AAAA").payload_start != len(prefix)):
            raise MarkerError(f"{where}.prefix: expected \"\" or a data URI's start such as "
                              f"\"data:image/png;base64,\", not {prefix!r:.80}")
        return {digest}
    if keys in ({"$image", "link"}, {"$image", "link", "unavailable"}):
        link = value["link"]
        if not (isinstance(link, str) and URL_START.match(link)):
            raise MarkerError(f"{where}.link: expected an http(s) URL, not {link!r:.80}")
        if digest is None:
            if not isinstance(value.get("unavailable"), str):
                raise MarkerError(f"{where}: an image not downloaded (\"$image\": null) says why in \"unavailable\"")
            return set()
        if not (isinstance(digest, str) and HEX64.fullmatch(digest)) or "unavailable" in keys:
            raise MarkerError(f"{where}.$image: expected the sha256 of an image file (64 hex digits), "
                              f"or null with \"unavailable\", not {digest!r:.80}")
        return {digest}
    raise MarkerError(f"{where}: an $image marker has \"prefix\" (inline data) or \"link\" (a downloaded link), "
                      f"not {sorted(keys)}")


def expand(value: Any, blob: Callable[[str], bytes], link: Callable[[dict[str, Any]], str]) -> Any:
    """The JSON value a canonical form stands for (a form ``check_form`` accepted): images
    inlined again from ``blob(sha256)``, links made by ``link(marker)``."""
    if isinstance(value, list):
        return [expand(item, blob, link) for item in value]
    if not isinstance(value, dict):
        return value
    if "$image" in value:
        if "link" in value:
            return link(value)
        return value["prefix"] + base64.b64encode(blob(value["$image"])).decode("ascii")
    return {(key[1:] if key.startswith("$$") else key): expand(item, blob, link) for key, item in value.items()}


def body_bytes(value: Any, blob: Callable[[str], bytes], link: Callable[[dict[str, Any]], str]) -> bytes:
    """The bytes of a canonical body."""
    if isinstance(value, dict) and "$text" in value:
        return value["$text"].encode("utf-8")
    if isinstance(value, dict) and "$bytes" in value:
        return blob(value["$bytes"])
    return dump_json(expand(value, blob, link))


# --------------------------------------------------------------------------- matching


def request_key(method: str, path: str, query: str, credentials: str, headers: Mapping[str, str],
                body: Any) -> str:
    """What two requests share exactly when they are the same request."""
    form = [method.upper(), path, query, credentials, dict(sorted(headers.items())), body]
    try:
        text = orjson.dumps(form, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers past 64 bits, lone surrogates: the same value always lands here
        text = json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass")
    return sha256(text)


def vary_headers(shape: Shape, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The request headers the provider's answer depends on, as sent (names lower-cased)."""
    wanted = set(shape.vary)
    return {name.lower(): value.strip() for name, value in headers if name.lower() in wanted}

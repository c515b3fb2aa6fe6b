"""Formats several layers read, each defined once: JSON text, a whole number written in text,
a data URI and image data in text, a bearer token, a host[:port] entry. Each parser answers ``None``
(or raises ``ValueError``, for settings) for anything it does not accept, so the caller
decides the error and its envelope."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson


class NotJson(ValueError):
    """Why bytes are not JSON; the reason never quotes them (they may be an image)."""


class JsonTooDeep(NotJson):
    pass


# Bytes to "0" for a digit and "x" for anything else: a run of 19 digits may be an integer past
# 64 bits, which orjson would read as a float (18446744073709551616 -> 1.8446744073709552e19).
_DIGIT_MAP = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x78 for byte in range(256))
_LONG_RUN = b"0" * 19


def _not_a_json_value(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def load_json(raw: bytes) -> Any:
    """``raw`` as RFC 8259 JSON: UTF-8 text, no NaN or Infinity, no lone surrogates, integers
    exact at any size. orjson where it is exact (any body without a run of 19 digits: about
    1 ms per MB to find out); the standard parser otherwise, and to say why orjson refused.
    ``NotJson`` (``JsonTooDeep`` for nesting past the parsers' limits) with the reason, which
    names a position, never the bytes."""
    if raw.translate(_DIGIT_MAP).find(_LONG_RUN) < 0:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_not_a_json_value)
        json.dumps(value, ensure_ascii=False).encode()  # "\ud800" parses, but is not text
    except UnicodeError:
        raise NotJson("it is not UTF-8 text") from None
    except RecursionError:
        raise JsonTooDeep("it is nested too deeply") from None
    except ValueError as error:
        raise NotJson(str(error)) from None
    return value


# ASCII digits only: str.isdigit() also accepts "²" and Arabic-Indic digits, which int() then
# refuses or reads as other numbers. And few of them: int() of thousands of digits is slow
# (and refused past 4300).
DIGITS = re.compile(r"[0-9]+")
MAX_DIGITS = 18


def whole_number(text: str, maximum: int | None = None) -> int | None:
    """``text`` as a non-negative integer of at most 18 ASCII digits (and at most ``maximum``)."""
    if len(text) > MAX_DIGITS or not DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if maximum is None or value <= maximum else None


def exceeds(text: str, limit: int) -> bool:
    """Whether ``text`` is a whole number, of any length, greater than ``limit``."""
    if not DIGITS.fullmatch(text):
        return False
    return len(text) > MAX_DIGITS or int(text) > limit


# RFC 2397, with the media type, a few parameters and the base64 marker; letter case is free
# (RFC 2397 and RFC 3986 treat scheme and type case-insensitively).
DATA_URI = re.compile(
    r"data:(?P<media_type>[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64})?(?:;[^;,]{0,100}){0,4};base64,",
    re.IGNORECASE,
)


# A long run of base64 alone is image data too (modelverse takes bare base64).
BASE64_RUN = re.compile(r"[A-Za-z0-9+/\r\n]{256,}={0,2}")


class DataUri(NamedTuple):
    media_type: str | None  # lower-case, as given
    payload_start: int  # where the base64 begins


def data_uri(value: str) -> DataUri | None:
    """The parts of a base64 ``data:`` URI at the start of ``value``."""
    if value[:5].lower() != "data:":  # most values are not: skip the regular expression
        return None
    match = DATA_URI.match(value)
    if match is None:
        return None
    media_type = match.group("media_type")
    return DataUri(media_type.lower() if media_type else None, match.end())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (scheme in any case)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def image_summary(media_type: str | None, payload: str) -> dict[str, Any]:
    """Base64 image data as a person wants to read it: media type, size and sha256."""
    try:
        data = base64.b64decode(payload.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        return {"media_type": media_type, "base64_chars": len(payload), "decodes": False,
                "sha256": hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()}
    return {"media_type": media_type, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def describe_image_string(value: str) -> dict[str, Any] | None:
    """The summary of a string that is image data (a base64 data URI, or a long run of bare
    base64), else None."""
    if value[:5].lower() == "data:":
        uri = data_uri(value)
        if uri is not None:
            return image_summary(uri.media_type, value[uri.payload_start:])
    elif len(value) >= 256 and BASE64_RUN.fullmatch(value):
        return image_summary(None, value)
    return None


# Image data quoted inside a message: a data URI and its base64, or a long run of base64.
QUOTED_IMAGE = re.compile(rf"(?:{DATA_URI.pattern})[A-Za-z0-9+/=\r\n]*|{BASE64_RUN.pattern}", re.IGNORECASE)


def describe_images_in(text: str) -> str:
    """``text`` with quoted image data replaced by its media type and size: a validator's
    message quotes the offending value, which for an image is base64 noise."""

    def described(match: re.Match[str]) -> str:
        quoted = match.group()
        uri = data_uri(quoted)
        if uri is None:
            return f"<{len(quoted)} characters of base64>"
        return f"<{uri.media_type or 'data'}, about {(len(quoted) - uri.payload_start) * 3 // 4} bytes as base64>"

    return QUOTED_IMAGE.sub(described, text)


@dataclass(frozen=True)
class AllowedHost:
    """An entry of ``--fetch-hosts``: a host, on any port or on the one it names."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> AllowedHost:
        """``images.example.com``, ``127.0.0.1:8080`` or ``[::1]:8080``; ``ValueError`` for an
        entry that could never match a URL."""
        try:
            parts = urlsplit(f"//{entry.strip()}")
            host, port = parts.hostname, parts.port
        except ValueError as error:
            raise ValueError(f"{entry!r} is not a host or host:port ({error})") from None
        if not host or parts.path or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{entry!r} is not a host or host:port (no scheme, path or user)")
        if port == 0:
            raise ValueError(f"{entry!r}: port 0 never matches")
        return cls(host.lower(), port)

    def matches(self, host: str, port: int) -> bool:
        return host == self.host and (self.port is None or port == self.port)


def parse_hosts(text: str) -> frozenset[AllowedHost]:
    return frozenset(AllowedHost.parse(entry) for entry in text.split(",") if entry.strip())

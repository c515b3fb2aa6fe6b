"""Formats several layers read, each defined once: a whole number written in text, a data
URI, a bearer token. Each parser answers ``None`` for anything it does not accept, so the
caller decides the error and its envelope."""

from __future__ import annotations

import re
from typing import NamedTuple

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

"""The rules JSON Schema cannot express, checked locally: ``x-size`` (a ``W*H`` string
whose total pixels, or each side, lie in a range) and ``x-image`` (an image reference: URL scheme,
inline encoding, base64, real image bytes, format, byte and pixel limits, recommended
side lengths).

The suite uses these checks twice: every generated valid request must pass them, and
every request built to break one of them must break exactly that one, before it is sent.
They read their limits from the schema keywords, never from constants of their own.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PIL import Image

DATA_URI = re.compile(r"data:image/([A-Za-z0-9.+-]+);base64,", re.IGNORECASE)
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")

# Sub-rules of x-image, in the order a careful server checks them: one request, one error.
IMAGE_RULES = ("schemes", "base64", "maxBytes", "decodes", "formats", "maxPixels", "recommendedSide")
SIZE_RULES = ("minPixels", "maxPixels", "minSide", "maxSide")

# Formats Pillow writes, with the data-URI subtype for each.
SUBTYPES = {"JPEG": "jpeg", "PNG": "png", "BMP": "bmp", "TIFF": "tiff", "WEBP": "webp", "GIF": "gif",
            "PPM": "x-portable-pixmap", "PCX": "x-pcx", "TGA": "x-tga", "ICO": "x-icon"}


# --------------------------------------------------------------------------- x-size


def _size_match(value: str, rules: dict[str, Any]) -> re.Match[str] | None:
    separators = "".join(re.escape(s) for s in rules["separators"])
    return re.fullmatch(rf"([0-9]+)[{separators}]([0-9]+)", value)


def size_problems(value: Any, rules: dict[str, Any]) -> list[str]:
    """The x-size limits a size string breaks, each of them ([] when it is fine or not a size
    at all: the schema's ``pattern`` speaks for the format)."""
    if not isinstance(value, str):
        return []
    match = _size_match(value, rules)
    if match is None:
        return []
    width, height = int(match.group(1)), int(match.group(2))
    broken = {
        "minPixels": width * height < rules.get("minPixels", 0),
        "maxPixels": "maxPixels" in rules and width * height > rules["maxPixels"],
        # a zero side is no size at all: below any lower bound
        "minSide": min(width, height) < rules.get("minSide", 0) or (
            "minSide" in rules and min(width, height) == 0),
        "maxSide": "maxSide" in rules and max(width, height) > rules["maxSide"],
    }
    return [name for name in SIZE_RULES if name in rules and broken[name]]


def parse_size(value: str, rules: dict[str, Any]) -> tuple[int, int]:
    match = _size_match(value, rules)
    if match is None:
        raise ValueError(f"{value!r} is not a size")
    return int(match.group(1)), int(match.group(2))


def derived_size(rule: dict[str, Any], input_size: tuple[int, int] | None) -> tuple[int, int]:
    """The output size an ``x-output-size`` block gives for an input image of ``input_size``
    (None: an input the server cannot see, a URL the mock does not fetch), worked out here
    from the keyword's documented meaning, independently of the mock's code:

    1. ``area``: scaled to about that many pixels, keeping the aspect ratio;
    2. ``maxAspectRatio``: the long side shortened to at most that many times the short one;
    3. ``minPixels`` / ``maxPixels``: scaled up (rounding up) or down (rounding down), keeping
       the ratio, into the pixel range;
    4. ``minSide`` / ``maxSide``: each side clamped into its range.

    Rounding is not documented anywhere: callers allow a pixel either way."""
    if input_size is None:
        return tuple(rule["forUrlInput"])  # type: ignore[return-value]
    width, height = max(1, input_size[0]), max(1, input_size[1])
    if rule.get("area"):
        scale = math.sqrt(rule["area"] / (width * height))
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    ratio = rule.get("maxAspectRatio")
    if ratio:
        width, height = min(width, height * ratio), min(height, width * ratio)
    pixels = width * height
    if "maxPixels" in rule and pixels > rule["maxPixels"]:
        scale = math.sqrt(rule["maxPixels"] / pixels)
        width, height = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    elif pixels < rule.get("minPixels", 1):
        scale = math.sqrt(rule["minPixels"] / pixels)
        width, height = math.ceil(width * scale), math.ceil(height * scale)
    low, high = rule.get("minSide", 1), rule.get("maxSide")
    width, height = max(width, low), max(height, low)
    if high:
        width, height = min(width, high), min(height, high)
    return width, height


def within_output_bounds(rule: dict[str, Any], size: tuple[int, int]) -> list[str]:
    """The bounds of an ``x-output-size`` block that ``size`` breaks."""
    width, height = size
    broken = []
    if "maxPixels" in rule and width * height > rule["maxPixels"]:
        broken.append(f"more than maxPixels {rule['maxPixels']} pixels")
    if width * height < rule.get("minPixels", 0):
        broken.append(f"fewer than minPixels {rule['minPixels']} pixels")
    if min(width, height) < rule.get("minSide", 0):
        broken.append(f"a side under minSide {rule['minSide']}")
    if "maxSide" in rule and max(width, height) > rule["maxSide"]:
        broken.append(f"a side over maxSide {rule['maxSide']}")
    ratio = rule.get("maxAspectRatio")
    if ratio and (width > height * ratio or height > width * ratio):
        broken.append(f"an aspect ratio over maxAspectRatio {ratio}")
    return broken


# --------------------------------------------------------------------------- x-image


@dataclass(frozen=True)
class ImageInfo:
    """What a valid inline image is: its format and size (None for a URL reference)."""

    format: str | None
    width: int | None
    height: int | None
    nbytes: int | None
    url: str | None = None


def classify(value: str, rules: dict[str, Any]) -> tuple[str, str]:
    """``("url", value)``, ``("inline", base64 text)`` or ``("bad-scheme", value)``."""
    match = DATA_URI.match(value)
    if match and rules.get("dataUri"):
        return "inline", value[match.end():]
    scheme = SCHEME.match(value)
    if scheme is None:
        if rules.get("bareBase64"):
            return "inline", value
        return "bad-scheme", value
    if scheme.group(1).lower() in rules["schemes"] and value[scheme.end():].startswith("//"):
        return "url", value
    return "bad-scheme", value


def image_problems(value: Any, rules: dict[str, Any], strict: bool) -> list[str]:
    """The x-image rule an image string breaks first ([] when it is a fine image)."""
    problem, _ = inspect_image(value, rules, strict)
    return [problem] if problem else []


_INSPECTED: dict[tuple[str, int, bool], tuple[str | None, ImageInfo | None]] = {}


def inspect_image(value: Any, rules: dict[str, Any], strict: bool) -> tuple[str | None, ImageInfo | None]:
    """The first x-image problem of ``value`` and, for a fine image, what it is. Memoised:
    the same image string is checked many times while requests are drawn and mutated."""
    if not isinstance(value, str) or not value:
        return None, None
    key = (value, id(rules), strict)
    if key not in _INSPECTED:
        if len(_INSPECTED) > 256:
            _INSPECTED.clear()
        _INSPECTED[key] = _inspect_image(value, rules, strict)
    return _INSPECTED[key]


def _inspect_image(value: str, rules: dict[str, Any], strict: bool) -> tuple[str | None, ImageInfo | None]:
    if not value:
        return None, None  # the schema's type / minLength speak for these
    kind, payload = classify(value, rules)
    if kind == "bad-scheme":
        return "schemes", None
    if kind == "url":
        return None, ImageInfo(None, None, None, None, url=value)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return "base64", None
    if len(data) > rules["maxBytes"]:
        return "maxBytes", None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = Image.open(io.BytesIO(data))
        except Exception:
            return "decodes", None
        with image:
            if image.format not in rules["formats"]:
                return "formats", None
            width, height = image.size
            if width * height > rules["maxPixels"]:
                return "maxPixels", None  # decided from the header, never decoded
            try:
                image.load()
            except Exception:
                return "decodes", None
            fmt = image.format
    side = rules["recommendedSide"]
    if strict and (min(width, height) < side["minimum"] or max(width, height) > side["maximum"]):
        return "recommendedSide", None
    return None, ImageInfo(fmt, width, height, len(data))


# --------------------------------------------------------------------------- making images


@lru_cache(maxsize=512)
def make_image(fmt: str, width: int, height: int, colour: tuple[int, int, int], accent: int = 0) -> bytes:
    """A real image: a flat colour with a contrasting band, so it is not trivially empty."""
    mode = "P" if fmt == "GIF" else "RGB"
    image = Image.new("RGB", (width, height), colour)
    band = tuple((c + 128 + accent) % 256 for c in colour)
    image.paste(band, (0, height // 3, width, max(height // 3 + 1, 2 * height // 3)))
    if mode == "P":
        image = image.convert("P")
    buffer = io.BytesIO()
    options: dict[str, Any] = {}
    if fmt == "TIFF":
        options["compression"] = "raw"
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def data_uri(data: bytes, fmt: str) -> str:
    return f"data:image/{SUBTYPES.get(fmt, fmt.lower())};base64,{base64.b64encode(data).decode()}"


def writable_formats(formats: list[str]) -> list[str]:
    from PIL import features

    out = []
    for fmt in formats:
        if fmt == "WEBP" and not features.check("webp"):
            continue
        if fmt in SUBTYPES:
            out.append(fmt)
    return out


def unsupported_format(formats: list[str]) -> str:
    """A format Pillow writes that the provider does not accept."""
    for fmt in ("PPM", "PCX", "TGA", "ICO"):
        if fmt not in formats:
            return fmt
    raise LookupError("every format Pillow writes is accepted")


@lru_cache(maxsize=4)
def oversized_image(formats: tuple[str, ...], max_bytes: int, max_pixels: int) -> tuple[str, bytes]:
    """A real, decodable image in an accepted, uncompressed format, just over ``max_bytes``."""
    for fmt in ("BMP", "TIFF"):
        if fmt in formats:
            side = math.isqrt(max_bytes // 3) + 8
            if side * side > max_pixels:
                continue
            data = make_image(fmt, side, side, (40, 90, 160))
            if len(data) > max_bytes:
                return fmt, data
    raise LookupError("no uncompressed accepted format to build an over-size image")


@lru_cache(maxsize=4)
def bomb_png(max_pixels: int) -> bytes:
    """A valid, tiny PNG (1-bit grey, all black) whose header claims more than
    ``max_pixels`` pixels: a decompression bomb in miniature."""
    side = math.isqrt(max_pixels) + 1
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    raw = zlib.compress(row * side, 9)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def describe_image_bytes(data: bytes) -> dict[str, Any]:
    """sha256, size and, where it decodes, format and dimensions: how the report and the
    recorded fixtures stand in for image bytes."""
    import hashlib

    info: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as image:
                info.update(format=image.format, width=image.width, height=image.height)
        except Exception:
            info["format"] = None
    return info

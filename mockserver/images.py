"""Input images: telling references from inline data, and decoding image bytes for real.

The rules (schemes, encodings, byte and pixel limits, formats) are the ``x-image`` keyword
of the provider's request schema. URLs are not fetched unless the user allows their host
(see ``fetch.py``): by default the mock works offline, and no request can make it connect
anywhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .errors import invalid_parameter
from .formats import BASE64_RUN, DATA_URI, data_uri

SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# A large JPEG is decoded at 1/8 scale (libjpeg still reads, and so checks, the whole
# stream): its colours are all the mock draws from it.
JPEG_DRAFT_PIXELS = 4_000_000
# The colours are summarised from at most this many pixels per side.
SUMMARY_SIDE = 256


@dataclass(frozen=True)
class ImageRules:
    schemes: tuple[str, ...]
    data_uri: bool
    bare_base64: bool
    max_bytes: int
    max_pixels: int
    formats: tuple[str, ...]
    recommended_min_side: int
    recommended_max_side: int

    @classmethod
    def from_schema(cls, rules: dict[str, Any]) -> ImageRules:
        return cls(
            schemes=tuple(rules["schemes"]),
            data_uri=rules["dataUri"],
            bare_base64=rules["bareBase64"],
            max_bytes=rules["maxBytes"],
            max_pixels=rules["maxPixels"],
            formats=tuple(rules["formats"]),
            recommended_min_side=rules["recommendedSide"]["minimum"],
            recommended_max_side=rules["recommendedSide"]["maximum"],
        )


@dataclass(frozen=True)
class ImageReference:
    """An input image as the request gave it: a URL, or base64 data not yet decoded."""

    param: str
    url: str | None = None
    encoded: str | None = None

    @property
    def is_inline(self) -> bool:
        return self.encoded is not None


@dataclass(frozen=True)
class DecodedImage:
    param: str
    format: str
    width: int
    height: int
    digest: str
    palette: tuple[str, ...]
    warning: str | None = None


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


def parse_reference(value: str, param: str, rules: ImageRules) -> ImageReference:
    """Classify an image string; cheap, so it runs on the event loop."""
    uri = data_uri(value)
    if uri is not None and uri.media_type is not None and uri.media_type.startswith("image/"):
        if rules.data_uri:
            return ImageReference(param, encoded=value[uri.payload_start :])
    else:
        scheme = SCHEME.match(value)
        if scheme is None:
            # Base64's alphabet has no colon, so anything without a scheme may be bare base64.
            if rules.bare_base64:
                return ImageReference(param, encoded=value)
        elif scheme.group(1).lower() in rules.schemes and value[scheme.end() :].startswith("//"):
            return ImageReference(param, url=value)
    accepted = [f"{s}://" for s in rules.schemes]
    if rules.data_uri:
        accepted.append("data:image/<format>;base64,")
    if rules.bare_base64:
        accepted.append("bare base64")
    raise invalid_parameter(param, f"unsupported image reference; expected one of: {', '.join(accepted)}")


def decode_inline(reference: ImageReference, rules: ImageRules, strict: bool) -> DecodedImage:
    """Decode inline image data for real; CPU-bound, so callers run it off the event loop."""
    assert reference.encoded is not None
    param = reference.param
    if len(reference.encoded) > (rules.max_bytes * 4) // 3 + 4:
        raise invalid_parameter(param, f"image is larger than {rules.max_bytes} bytes")
    try:
        data = base64.b64decode(reference.encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_parameter(param, "image data is not valid base64") from None
    return decode_image(param, data, rules, strict)


class PixelBudget:
    """How many decoded pixels may be held at once, across the threads decoding images: a
    50-megapixel input costs ~200 MB while it is decoded, and the number of threads grows
    with the machine's cores; the budget does not. An image waits for room, not a retry."""

    def __init__(self, pixels: int) -> None:
        self.capacity = pixels
        self.free = pixels
        self._condition = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.capacity)
        with self._condition:
            while self.free < pixels:
                self._condition.wait()
            self.free -= pixels
        try:
            yield
        finally:
            with self._condition:
                self.free += pixels
                self._condition.notify_all()


# Room for one image at the bomb guard's limit and small ones beside it.
DECODE_BUDGET = PixelBudget(64_000_000)


def decode_image(param: str, data: bytes, rules: ImageRules, strict: bool) -> DecodedImage:
    """Check image bytes (inline, or fetched from an allowed URL) are a real, accepted image."""
    if len(data) > rules.max_bytes:
        raise invalid_parameter(param, f"image is larger than {rules.max_bytes} bytes")
    if not data:
        raise invalid_parameter(param, "image data is empty")

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=rules.formats)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb(param, rules) from None
        except Exception:
            raise invalid_parameter(
                param, f"image data is not a supported image ({', '.join(rules.formats)})"
            ) from None
        with image:
            width, height = image.size
            # Decided from the header alone, before a single pixel is decoded.
            if width * height > rules.max_pixels:
                raise _bomb(param, rules)
            image_format = image.format or "unknown"
            if image_format == "JPEG" and width * height > JPEG_DRAFT_PIXELS:
                image.draft("RGB", (width // 8, height // 8))
            try:
                with DECODE_BUDGET.hold(image.width * image.height):
                    image.load()
                    palette = _palette(image)
            except Exception:
                raise invalid_parameter(param, f"image data could not be decoded as {image_format}") from None

    warning = None
    if min(width, height) < rules.recommended_min_side or max(width, height) > rules.recommended_max_side:
        warning = (
            f"{param}: {width}x{height} is outside the recommended "
            f"{rules.recommended_min_side}-{rules.recommended_max_side} px per side"
        )
        if strict:
            raise invalid_parameter(param, warning.split(": ", 1)[1])
    return DecodedImage(
        param=param,
        format=image_format,
        width=width,
        height=height,
        digest=hashlib.sha256(data).hexdigest(),
        palette=palette,
        warning=warning,
    )


def _bomb(param: str, rules: ImageRules):
    return invalid_parameter(param, f"image claims more than {rules.max_pixels} pixels (decompression bomb guard)")


def _palette(image: Image.Image) -> tuple[str, ...]:
    """Four colours summarising the image's quadrants, drawn on the output."""
    if image.mode != "RGB":
        if max(image.size) > SUMMARY_SIDE:
            # Sampled before converting: a converted copy of a large image would double its cost.
            image = image.resize((min(image.width, SUMMARY_SIDE), min(image.height, SUMMARY_SIDE)),
                                 Image.Resampling.NEAREST)
        image = image.convert("RGB")
    quadrants = image.resize((2, 2), Image.Resampling.BOX)
    return tuple("#%02x%02x%02x" % quadrants.getpixel((x, y)) for y in (0, 1) for x in (0, 1))

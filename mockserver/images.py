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
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .errors import invalid_parameter

DATA_URI = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


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


def parse_reference(value: str, param: str, rules: ImageRules) -> ImageReference:
    """Classify an image string; cheap, so it runs on the event loop."""
    if DATA_URI.match(value):
        if rules.data_uri:
            return ImageReference(param, encoded=value[value.index(",") + 1 :])
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
            try:
                image.load()
                palette = _palette(image)
            except Exception:
                raise invalid_parameter(param, f"image data could not be decoded as {image.format}") from None
            image_format = image.format or "unknown"

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
    quadrants = image.convert("RGB").resize((2, 2), Image.Resampling.BOX)
    return tuple("#%02x%02x%02x" % quadrants.getpixel((x, y)) for y in (0, 1) for x in (0, 1))

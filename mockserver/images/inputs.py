"""Input images decoded for real: inline data, or bytes downloaded from an allowed host
(``fetch.py``), checked against the ``x-image`` rules of the provider's request schema
(``core/references.py``), within a budget of decoded pixels shared by all requests."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from ..core.errors import invalid_parameter
from ..core.references import ImageReference, ImageRules

# A large JPEG is decoded at 1/8 scale (libjpeg still reads, and so checks, the whole
# stream): its colours are all the mock draws from it.
JPEG_DRAFT_PIXELS = 4_000_000
# The colours are summarised from at most this many pixels per side.
SUMMARY_SIDE = 256


@dataclass(frozen=True)
class DecodedImage:
    param: str
    format: str
    width: int
    height: int
    digest: str
    palette: tuple[str, ...]
    warning: str | None = None


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

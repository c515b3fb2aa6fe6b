"""Pictures of the images an exchange carried, for the dashboard: each image is shown by a
preview, the image itself when it is small and a format every browser shows, else a
thumbnail at most ``THUMBNAIL_SIDE`` pixels a side.

Previews are made where the journal has the image's data: when it reduces a large body (in
a worker thread, before the data goes), or when the dashboard reads a small body the
journal kept as it came. While no page watches, recording makes no thumbnail (decoding an
image is work the journal did not do before the dashboard): it keeps only the images that
are their own preview, a copy of bytes it has decoded anyway. They are kept by the sha256
of the image in a store bounded in bytes (the render cache's least-recently-used store),
which the journal counts in its own byte budget. The mock's own outputs are flat-colour PNGs
of a few kilobytes (15 KB at 2048x2048), so they are kept whole and "full size" works for
``b64_json`` answers too.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Protocol

from PIL import Image

from ..core.formats import BASE64_RUN, data_uri
from ..images.cache import PngCache
from ..images.inputs import DECODE_BUDGET, JPEG_DRAFT_PIXELS

THUMBNAIL_SIDE = 256
# An image this small, in a format browsers show, is its own preview.
WHOLE_BYTES = 32 * 1024
# A thumbnail is not worth decoding more than this (a JPEG is decoded at 1/8 scale first):
# the endpoint decodes such an image once already; the dashboard says it has no picture.
MAX_SOURCE_PIXELS = 16_000_000
# The formats a preview is made from: those the providers accept. Pillow's other openers
# (EPS runs Ghostscript) are never reached with a client's bytes.
SOURCE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# What an empty preview means in the store: this image has none (undecodable, too large).
NO_PREVIEW = b""

# Magic numbers of the formats a browser shows in an <img>; anything else is converted.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff(data: bytes) -> str | None:
    """The media type of image bytes a browser shows, from their first bytes (never from
    what the client claimed: a ``data:image/svg+xml`` must not become a document)."""
    for signature, media_type in SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_image_string(value: str) -> bytes | None:
    """The image bytes of a base64 data URI or a long run of bare base64 (the strings the
    journal describes as images), or None."""
    uri = data_uri(value)
    if uri is not None:
        payload = value[uri.payload_start:]
    elif len(value) >= 256 and BASE64_RUN.fullmatch(value):
        payload = value
    else:
        return None
    try:
        return base64.b64decode(payload.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        return None


def is_own_preview(data: bytes) -> bool:
    return len(data) <= WHOLE_BYTES and sniff(data) is not None


def make_preview(data: bytes) -> bytes:
    """The preview of image bytes: themselves, or a PNG or JPEG thumbnail; ``NO_PREVIEW`` for
    what cannot be shown. CPU-bound for large images: callers off the event loop."""
    if is_own_preview(data):
        return data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=SOURCE_FORMATS) as image:
                width, height = image.size
                if image.format == "JPEG" and width * height > JPEG_DRAFT_PIXELS:
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                elif width * height > MAX_SOURCE_PIXELS:
                    return NO_PREVIEW
                with DECODE_BUDGET.hold(image.width * image.height):
                    image.load()
                    return _thumbnail(image)
    except Exception:  # noqa: BLE001 -- any image a client sends: no preview, never an error
        return NO_PREVIEW


def _thumbnail(image: Image.Image) -> bytes:
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image.convert("RGBA").save(buffer, format="PNG")
    else:
        # Photographs are most of what clients send: JPEG keeps their thumbnails small.
        image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def as_data_uri(preview: bytes) -> str | None:
    media_type = sniff(preview)
    if media_type is None:
        return None
    return f"data:{media_type};base64,{base64.b64encode(preview).decode()}"


class Previewer(Protocol):
    """Where the journal leaves the previews of the images it reduces."""

    def get(self, sha256: str) -> bytes | None: ...

    def keep(self, sha256: str, data: bytes) -> bytes: ...


class PreviewStore(PngCache):
    """Previews by the sha256 of their image, least recently used dropped first, bounded by
    what they hold (the render cache's store); safe to use from worker threads."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.without_thumbnails = WholeImagesOnly(self)

    def keep(self, sha256: str, data: bytes) -> bytes:
        """The preview of the image ``data`` (whose sha256 the caller has), made once."""
        return self.get_or_make(sha256, lambda: make_preview(data))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0


class WholeImagesOnly:
    """The store as recording uses it while no page watches: it keeps the images that are
    their own preview and makes no thumbnail (nor remembers that it made none, so an image
    seen again while a page watches gets one)."""

    def __init__(self, store: PreviewStore) -> None:
        self.store = store

    def get(self, sha256: str) -> bytes | None:
        return self.store.get(sha256)

    def keep(self, sha256: str, data: bytes) -> bytes:
        return self.store.keep(sha256, data) if is_own_preview(data) else NO_PREVIEW

"""Making input images and reading output images, for the tests."""

from __future__ import annotations

import base64
import io

from PIL import Image


def image_bytes(width: int = 64, height: int = 48, fmt: str = "PNG", colour=(200, 30, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def data_uri(data: bytes, subtype: str = "png") -> str:
    return f"data:image/{subtype};base64,{base64.b64encode(data).decode()}"


def open_png(data: bytes) -> Image.Image:
    """Decode ``data`` fully and check that it is a PNG."""
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG", image.format
    return image


def b64_png(b64_json: str) -> Image.Image:
    """A ``b64_json`` value (plain base64 or a data URI) decoded as a PNG."""
    _, _, payload = b64_json.rpartition("base64,")
    return open_png(base64.b64decode(payload, validate=True))

"""Schemathesis hooks for qwen-image-mock's OpenAPI document (``GET /openapi.json``).

Two request rules are beyond JSON Schema: an image reference must hold a real image
(``x-image``) and a size's total pixels must be within a range (``x-size``). The document
marks those nodes with the formats ``qwen-image-reference`` and ``qwen-size`` (see
``openapi.py``); without this module Schemathesis draws arbitrary strings for them, which
the mock rightly refuses, and reports the refusals as failures. Load it with::

    SCHEMATHESIS_HOOKS=mockserver.testing.schemathesis_hooks schemathesis run http://127.0.0.1:8000/openapi.json ...

(or ``hooks = "mockserver.testing.schemathesis_hooks"`` in ``schemathesis.toml``). When the document
is loaded, the hook reads every node's ``x-image`` / ``x-size`` parameters and registers a
Hypothesis strategy for each format, drawing values every such node accepts:

- ``qwen-image-reference``: ``http(s)://`` URLs (the schemes the rules list, in any letter
  case) on reserved ``.example`` hosts, which the mock does not fetch unless told to; and
  ``data:image/<fmt>;base64,`` URIs (prefix in any letter case) — and bare base64 if every
  node allows it — of real, small images in each format the rules accept, encoded by Pillow
  (PNG only, written here, when Pillow is not installed);
- ``qwen-size``: ``W<sep>H`` with each accepted separator and the total pixels anywhere in
  the range (shapes from square to one pixel wide).

Nothing but the standard library, Hypothesis, Schemathesis and (optionally) Pillow is used,
so the file also works loaded by path (``SCHEMATHESIS_HOOKS=path/to/schemathesis_hooks.py``)
from an environment without the mock installed.
"""

from __future__ import annotations

import base64
import io
import math
import string
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import schemathesis
from hypothesis import strategies as st

# The formats openapi.py gives the nodes carrying x-image and x-size.
IMAGE_FORMAT = "qwen-image-reference"
SIZE_FORMAT = "qwen-size"

# Side lengths of the generated images. Small, so that requests stay light and fast; the mock
# accepts them (with an x-mock-warnings note that they are under the recommended size).
MAX_SIDE = 48
# RFC 6761 reserves .example: these names never resolve.
URL_HOSTS = ("images.example", "cdn.example", "example")
MEDIA_SUBTYPES = {"JPEG": "jpeg", "PNG": "png", "BMP": "bmp", "TIFF": "tiff", "WEBP": "webp", "GIF": "gif"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp", "GIF": "gif"}
LETTER_CASES = (str.lower, str.upper, str.title)


# ----------------------------------------------------------------------------- the rules


def rules_in(document: Any, keyword: str, format_name: str) -> Iterator[Mapping[str, Any]]:
    """The ``keyword`` parameters of every node of ``document`` marked ``format_name``."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if node.get("format") == format_name and isinstance(node.get(keyword), Mapping):
                yield node[keyword]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _common(lists: Sequence[Sequence[str]], *, fold: bool = False) -> list[str]:
    """The values in every list, in the first list's order."""
    def key(value: str) -> str:
        return value.lower() if fold else value

    first, *others = lists
    return [value for value in first if all(key(value) in {key(v) for v in other} for other in others)]


# ---------------------------------------------------------------------------- qwen-size


def sizes(rules: Sequence[Mapping[str, Any]]) -> st.SearchStrategy[str]:
    """``W<sep>H`` sizes every ``x-size`` in ``rules`` accepts: the separators they share, the
    pixel range and the side range they all allow (a rule may bound the total, the sides or
    both)."""
    separators = _common([r["separators"] for r in rules])
    low = max(1, *(int(r.get("minPixels", 1)) for r in rules))
    high = min(int(r.get("maxPixels", 2**31)) for r in rules)
    min_side = max(1, *(int(r.get("minSide", 1)) for r in rules))
    max_side = min(int(r.get("maxSide", high)) for r in rules)
    if not separators or low > high or min_side > max_side:
        return st.nothing()

    # A side of at most high - low + 1 always has a multiple within [low, high]. Sides up to
    # sqrt(high) give everyday shapes; the rest of the range reaches one-pixel-wide strips.
    everyday = max(min_side, min(math.isqrt(high), high - low + 1, max_side))
    sides = st.one_of(st.integers(min_side, everyday), st.integers(min_side, max(min_side, min(high - low + 1, max_side))))

    @st.composite
    def draw_size(draw: st.DrawFn) -> str:
        side = draw(sides)
        lowest, highest = max(-(-low // side), min_side), min(high // side, max_side)
        if lowest > highest:
            side, lowest, highest = min_side, max(-(-low // min_side), min_side), min(high // min_side, max_side)
        other = draw(st.integers(lowest, highest))
        width, height = (side, other) if draw(st.booleans()) else (other, side)
        return f"{width}{draw(st.sampled_from(separators))}{height}"

    return draw_size()


# ----------------------------------------------------------------- qwen-image-reference


def _pillow_formats() -> set[str]:
    try:
        from PIL import Image, features
    except ImportError:
        return set()
    Image.init()
    available = set(Image.SAVE) & set(MEDIA_SUBTYPES)
    if not features.check("webp"):
        available.discard("WEBP")
    return available


def _png(width: int, height: int, colours: Sequence[tuple[int, int, int]]) -> bytes:
    """A PNG without Pillow: the image split into vertical bands of the colours."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"".join(bytes(colours[x * len(colours) // width]) for x in range(width))
    pixels = b"".join(b"\x00" + row for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


def encode_image(image_format: str, width: int, height: int, colours: Sequence[tuple[int, int, int]]) -> bytes:
    """A real image: ``width`` x ``height``, in vertical bands of ``colours``."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        assert image_format == "PNG", image_format
        return _png(width, height, colours)
    image = Image.new("RGB", (width, height), colours[0])
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate(colours[1:], start=1):
        draw.rectangle((i * width // len(colours), 0, width, height), fill=colour)
    out = io.BytesIO()
    image.save(out, format=image_format)
    return out.getvalue()


def image_references(rules: Sequence[Mapping[str, Any]]) -> st.SearchStrategy[str]:
    """Image references every ``x-image`` in ``rules`` accepts."""
    schemes = _common([r.get("schemes", []) for r in rules], fold=True)
    formats = [f for f in _common([r.get("formats", []) for r in rules], fold=True) if f.upper() in MEDIA_SUBTYPES]
    encodable = _pillow_formats() or {"PNG"}
    formats = [f.upper() for f in formats if f.upper() in encodable]
    max_bytes = min(int(r.get("maxBytes", 10 * 2**20)) for r in rules)
    max_pixels = min(int(r.get("maxPixels", MAX_SIDE**2)) for r in rules)
    side = max(1, min(MAX_SIDE, math.isqrt(max_pixels)))
    choices: list[st.SearchStrategy[str]] = []

    if schemes:
        path = st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=16)
        extension = st.sampled_from([EXTENSIONS[f] for f in formats] or ["png"])
        choices.append(st.builds(
            "{}://{}/{}.{}".format,
            st.sampled_from(schemes).flatmap(lambda s: st.sampled_from(LETTER_CASES).map(lambda case: case(s))),
            st.sampled_from(URL_HOSTS), path, extension,
        ))

    inline = all(r.get("dataUri") for r in rules)
    bare = all(r.get("bareBase64") for r in rules)
    if formats and (inline or bare):
        colour = st.tuples(*[st.integers(0, 255)] * 3)
        def image(image_format: str, width: int, height: int, colours: list[tuple[int, int, int]]) -> tuple[str, bytes]:
            return image_format, encode_image(image_format, width, height, colours)

        images = st.builds(
            image, st.sampled_from(formats), st.integers(1, side), st.integers(1, side),
            st.lists(colour, min_size=1, max_size=4),
        ).filter(lambda item: 0 < len(item[1]) <= max_bytes)
        if inline:
            def data_uri(item: tuple[str, bytes], case: Any) -> str:
                image_format, data = item
                return case(f"data:image/{MEDIA_SUBTYPES[image_format]};base64,") + base64.b64encode(data).decode()

            choices.append(st.builds(data_uri, images, st.sampled_from(LETTER_CASES)))
        if bare:
            choices.append(images.map(lambda item: base64.b64encode(item[1]).decode()))
    return st.one_of(choices) if choices else st.nothing()


# ---------------------------------------------------------------------------- the hooks


def register(document: Mapping[str, Any]) -> None:
    """Register a strategy for each of the mock's formats that ``document`` uses."""
    image_rules = list(rules_in(document, "x-image", IMAGE_FORMAT))
    if image_rules:
        schemathesis.openapi.format(IMAGE_FORMAT, image_references(image_rules))
    size_rules = list(rules_in(document, "x-size", SIZE_FORMAT))
    if size_rules:
        schemathesis.openapi.format(SIZE_FORMAT, sizes(size_rules))


@schemathesis.hook
def before_load_schema(context: schemathesis.HookContext, raw_schema: dict[str, Any]) -> None:
    register(raw_schema)

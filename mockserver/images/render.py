"""Deterministic fake output images.

Each image is a pure function of its ``RenderSpec``: the same spec gives the same PNG
bytes in any process, on any machine with the same Pillow. Only integer drawing and
Pillow's built-in bitmap font are used (no anti-aliasing, no system fonts), and the
PNG carries no timestamps. The picture shows a person what it is: the input image's
colours along the top, shapes chosen by the seed, and the prompt, seed and index written
at the bottom.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import textwrap
import zlib
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from ..core.job import SEED_LIMIT

FONT = ImageFont.load_default_imagefont()
LINE_HEIGHT = 12
CHAR_WIDTH = 6
# What a spec may carry; links carry specs, so these also bound what a forged link can ask for.
CAPTION_LIMIT = 160
MODEL_LIMIT = 100
PALETTE_LIMIT = 8
INDEX_LIMIT = 64
FINGERPRINT = re.compile(r"[0-9a-f]{16}")
COLOUR = re.compile(r"#[0-9a-f]{6}")
# The caption panel spans at most this many pixels (before scaling): a 4194304x1 image needs
# no panel of that width.
PANEL_MAX_WIDTH = 1024
# The pictures are runs of flat colour: run-length deflate is as small as the default
# strategy and, at 512x512, several times faster.
PNG_COMPRESS_TYPE = zlib.Z_RLE


class RenderSpec(NamedTuple):
    """Everything an image is drawn from. A named tuple: cheap to make, and hashable as the
    render cache's key."""

    width: int
    height: int
    seed: int
    index: int
    fingerprint: str
    caption: str
    model: str
    palette: tuple[str, ...] = ()

    def as_list(self) -> list:
        """Positional, for links to carry."""
        return [*self[:-1], list(self.palette)]

    @classmethod
    def from_list(cls, data: object) -> RenderSpec:
        """A spec from ``as_list``'s form, checked as strictly as a request body (a link that
        carries it may be forged); ``ValueError`` for anything else. The size is checked by
        whoever knows the bounds."""
        if not (isinstance(data, list) and len(data) == 8):
            raise ValueError("a render spec is a list of 8 values")
        width, height, seed, index, fingerprint, caption, model, palette = data
        if not (_whole(width, 1, 2**31) and _whole(height, 1, 2**31)):
            raise ValueError("width and height must be positive integers")
        if not (_whole(seed, 0, SEED_LIMIT - 1) and _whole(index, 0, INDEX_LIMIT - 1)):
            raise ValueError("seed or index out of range")
        if not (isinstance(fingerprint, str) and FINGERPRINT.fullmatch(fingerprint)):
            raise ValueError("fingerprint must be 16 hex digits")
        if not (isinstance(caption, str) and len(caption) <= CAPTION_LIMIT):
            raise ValueError(f"caption must be a string of at most {CAPTION_LIMIT} characters")
        if not (isinstance(model, str) and 0 < len(model) <= MODEL_LIMIT):
            raise ValueError(f"model must be a string of 1 to {MODEL_LIMIT} characters")
        if not (isinstance(palette, list) and len(palette) <= PALETTE_LIMIT
                and all(isinstance(c, str) and COLOUR.fullmatch(c) for c in palette)):
            raise ValueError(f"palette must be at most {PALETTE_LIMIT} colours written #rrggbb")
        return cls(width, height, seed, index, fingerprint, caption, model, tuple(palette))


def _whole(value: object, low: int, high: int) -> bool:
    # bool is an int in Python, not in JSON
    return type(value) is int and low <= value <= high


def _rng(spec: RenderSpec) -> random.Random:
    digest = hashlib.sha256(f"{spec.fingerprint}:{spec.seed}:{spec.index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _hex(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


class _Palette:
    """Colours of a palette ("P" mode) image: a third of the bytes to compress, so PNG
    encoding costs about a fifth of an RGB image's."""

    def __init__(self) -> None:
        self.colours: list[tuple[int, int, int]] = [BLACK, WHITE]

    def index(self, colour: tuple[int, int, int]) -> int:
        self.colours.append(colour)
        return len(self.colours) - 1

    def flat(self) -> list[int]:
        return [channel for colour in self.colours for channel in colour]


BLACK, WHITE = (0, 0, 0), (255, 255, 255)


def drawable(text: str) -> str:
    # The built-in bitmap font has Latin-1 glyphs only; other characters show as "?"
    # (the image still differs by prompt: the fingerprint covers the full text).
    return text.encode("latin-1", "replace").decode("latin-1")


def _caption_panel(spec: RenderSpec, scale: int, palette: list[int]) -> Image.Image:
    """Seed and index first, then the prompt and the model, in at most half the height,
    so that a small image still shows what tells it apart and some of its picture."""
    columns = max(4, min(PANEL_MAX_WIDTH, spec.width // scale) // CHAR_WIDTH - 2)
    lines = [f"seed {spec.seed}  image {spec.index + 1}  {spec.width}x{spec.height}"]
    lines += textwrap.wrap(drawable(spec.caption), columns, max_lines=3, placeholder="...")
    lines.append(spec.model)
    room = max(1, (spec.height // 2 // scale - 6) // LINE_HEIGHT)
    lines = lines[:room]
    panel = Image.new("P", (max(1, min(PANEL_MAX_WIDTH, -(-spec.width // scale))), LINE_HEIGHT * len(lines) + 6), 1)
    panel.putpalette(palette)
    draw = ImageDraw.Draw(panel)
    for row, line in enumerate(lines):
        draw.text((CHAR_WIDTH, 3 + row * LINE_HEIGHT), line, font=FONT, fill=0)
    return panel.resize((panel.width * scale, panel.height * scale), Image.Resampling.NEAREST)


def render_image(spec: RenderSpec) -> bytes:
    """The PNG for ``spec``: exactly ``width`` x ``height``."""
    rng = _rng(spec)
    width, height = spec.width, spec.height
    colours = _Palette()
    image = Image.new("P", (width, height), colours.index(_colour(rng)))
    draw = ImageDraw.Draw(image)

    swatches = [_hex(c) for c in spec.palette] or [_colour(rng) for _ in range(4)]
    band = max(1, height // 8)
    for i, colour in enumerate(swatches):
        box = (i * width // len(swatches), 0, (i + 1) * width // len(swatches), band)
        draw.rectangle(box, fill=colours.index(colour))

    for _ in range(rng.randint(4, 9)):
        x0, x1 = sorted((rng.randrange(width), rng.randrange(width)))
        y0, y1 = sorted((rng.randint(band, height), rng.randint(band, height)))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colours.index(_colour(rng)), outline=0)

    palette = colours.flat()
    scale = max(1, min(width, height) // 512)
    panel = _caption_panel(spec, scale, palette)
    image.paste(panel, (0, max(band, height - panel.height)))
    image.putpalette(palette)

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_type=PNG_COMPRESS_TYPE)
    return buffer.getvalue()

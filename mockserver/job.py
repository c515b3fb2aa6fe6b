"""The provider-neutral edit job: what every provider's request comes down to."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import invalid_parameter
from .images import ImageReference, ImageRules

SEED_LIMIT = 2**31


@dataclass(frozen=True)
class OutputBounds:
    """The largest images a provider answers with: a pixel total and, where it has one, a
    limit on the aspect ratio. Every image the mock draws, and every link it serves (a
    forged one too), is within its provider's bounds."""

    max_pixels: int
    max_aspect_ratio: int | None = None

    def admits(self, width: int, height: int) -> bool:
        if width < 1 or height < 1 or width * height > self.max_pixels:
            return False
        ratio = self.max_aspect_ratio
        return ratio is None or (width <= height * ratio and height <= width * ratio)

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """``width`` x ``height`` with its aspect ratio clamped (shortening the long side), then
        scaled down, keeping that ratio, to at most ``max_pixels``."""
        width, height = self._clamp_ratio(width, height)
        if width * height > self.max_pixels:
            scale = math.sqrt(self.max_pixels / (width * height))
            width, height = self._clamp_ratio(max(1, int(width * scale)), max(1, int(height * scale)))
            while width * height > self.max_pixels:  # float rounding, at most a step or two
                width, height = (width - 1, height) if width >= height else (width, height - 1)
        return width, height

    def _clamp_ratio(self, width: int, height: int) -> tuple[int, int]:
        ratio = self.max_aspect_ratio
        return (width, height) if ratio is None else (min(width, height * ratio), min(height, width * ratio))


@dataclass(frozen=True)
class SameAsInput:
    """Output size follows the first inline input image, fitted into the provider's bounds;
    ``fallback`` when there is none."""

    fallback: tuple[int, int]
    bounds: OutputBounds


@dataclass(slots=True)
class EditJob:
    model: str
    prompt: str
    images: tuple[ImageReference, ...]
    image_rules: ImageRules
    n: int
    size: tuple[int, int] | SameAsInput
    response_format: str
    negative_prompt: str | None = None
    seed: int | None = None
    # Other parameters that would change a real model's output (strength, steps, ...).
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def has_inline_images(self) -> bool:
        return any(image.is_inline for image in self.images)


def fingerprint(job: EditJob, image_identities: list[str], size: tuple[int, int]) -> str:
    """A digest of everything that should make the output differ (but not n or the format)."""
    canonical = orjson.dumps(
        {
            "model": job.model,
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "images": image_identities,
            "size": list(size),
            "seed": job.seed,
            "options": job.options,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.blake2b(canonical, digest_size=32).hexdigest()


def effective_seed(job: EditJob, digest: str) -> int:
    """The request's seed, or one derived from the request, so "random" is reproducible."""
    return job.seed if job.seed is not None else int(digest[:8], 16) % SEED_LIMIT


@dataclass(frozen=True)
class SizeRules:
    """The ``x-size`` keyword of a schema: how a size is written, and its pixel range."""

    pattern: re.Pattern[str]
    min_pixels: int
    max_pixels: int

    @classmethod
    def from_schema(cls, rules: dict[str, Any]) -> SizeRules:
        separators = "".join(re.escape(s) for s in rules["separators"])
        return cls(re.compile(rf"([0-9]{{1,9}})[{separators}]([0-9]{{1,9}})"), rules["minPixels"], rules["maxPixels"])


def parse_size(text: str, param: str, rules: SizeRules) -> tuple[int, int]:
    """``W*H`` / ``WxH`` within the total-pixel range of the schema's ``x-size`` keyword."""
    match = rules.pattern.fullmatch(text)
    if match is None:
        raise invalid_parameter(param, f"{text[:40]!r} is not a size written as W*H or WxH")
    width, height = int(match.group(1)), int(match.group(2))
    if width == 0 or height == 0:
        raise invalid_parameter(param, "width and height must be positive integers")
    low, high = rules.min_pixels, rules.max_pixels
    if not low <= width * height <= high:
        raise invalid_parameter(
            param, f"{width}*{height} is {width * height} pixels; the total must be between {low} and {high}"
        )
    return width, height

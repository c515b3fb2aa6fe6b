"""Output sizes: how a request writes one (``x-size``), and the bounds of what a provider
answers with (``x-output-size``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .errors import invalid_parameter
from .formats import whole_number


@dataclass(frozen=True)
class SizeRules:
    """The ``x-size`` keyword of a schema: how a size is written, its range of total pixels
    and, where there is one, of each side."""

    separators: tuple[str, ...]
    min_pixels: int = 1
    max_pixels: int | None = None
    min_side: int = 1
    max_side: int | None = None

    @classmethod
    def from_schema(cls, rules: dict[str, Any]) -> SizeRules:
        return cls(tuple(rules["separators"]), rules.get("minPixels", 1), rules.get("maxPixels"),
                   rules.get("minSide", 1), rules.get("maxSide"))

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"([0-9]+)[{''.join(re.escape(s) for s in self.separators)}]([0-9]+)")

    @property
    def forms(self) -> str:
        return " or ".join(f"W{s}H" for s in self.separators)


def parse_size(text: str, param: str, rules: SizeRules) -> tuple[int, int]:
    """``W*H`` (or another separator the schema's ``x-size`` lists) within its ranges."""
    match = rules.pattern.fullmatch(text)
    if match is None:
        raise invalid_parameter(param, f"{text[:40]!r} is not a size written as {rules.forms}")
    # Leading zeros are allowed (the schema's pattern allows them); past nine significant
    # digits a side is out of any range, and int() of thousands of digits is slow.
    width, height = (whole_number(group.lstrip("0") or "0", maximum=10**9) for group in match.groups())
    if width is None or height is None:
        raise invalid_parameter(param, f"{text[:40]!r}: a side of a billion pixels or more is out of range")
    if width == 0 or height == 0:
        raise invalid_parameter(param, "width and height must be positive integers")
    low, high = rules.min_pixels, rules.max_pixels
    if width * height < low or (high is not None and width * height > high):
        raise invalid_parameter(
            param, f"{width}*{height} is {width * height} pixels; the total must be between {low} and {high}"
        )
    low, high = rules.min_side, rules.max_side
    if min(width, height) < low or (high is not None and max(width, height) > high):
        raise invalid_parameter(param, f"{width}*{height}: each side must be between {low} and {high} pixels")
    return width, height


@dataclass(frozen=True)
class OutputBounds:
    """The images a provider answers with: a range of total pixels and, where it has them, a
    limit on the aspect ratio and a range for each side. Every image the mock draws, and every
    link it serves (a forged one too), is within its provider's bounds."""

    max_pixels: int
    max_aspect_ratio: int | None = None
    min_pixels: int = 1
    min_side: int = 1
    max_side: int | None = None

    def admits(self, width: int, height: int) -> bool:
        ratio, high = self.max_aspect_ratio, self.max_side
        return (
            min(width, height) >= self.min_side
            and (high is None or max(width, height) <= high)
            and self.min_pixels <= width * height <= self.max_pixels
            and (ratio is None or (width <= height * ratio and height <= width * ratio))
        )

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """``width`` x ``height`` with its aspect ratio clamped (shortening the long side), then
        scaled, keeping that ratio, into the pixel range, then each side into its range."""
        width, height = self._clamp_ratio(max(1, width), max(1, height))
        pixels = width * height
        if pixels > self.max_pixels:
            scale = math.sqrt(self.max_pixels / pixels)
            width, height = max(1, int(width * scale)), max(1, int(height * scale))
        elif pixels < self.min_pixels:
            scale = math.sqrt(self.min_pixels / pixels)
            width, height = math.ceil(width * scale), math.ceil(height * scale)
        width, height = self._clamp_ratio(*self._clamp_sides(width, height))
        # Rounding leaves a pixel's worth at most to settle.
        while width * height > self.max_pixels:
            width, height = (width - 1, height) if width >= height else (width, height - 1)
        while width * height < self.min_pixels:
            width, height = (width + 1, height) if width <= height else (width, height + 1)
        return width, height

    def _clamp_ratio(self, width: int, height: int) -> tuple[int, int]:
        ratio = self.max_aspect_ratio
        return (width, height) if ratio is None else (min(width, height * ratio), min(height, width * ratio))

    def _clamp_sides(self, width: int, height: int) -> tuple[int, int]:
        high = self.max_side or max(width, height)
        return min(max(width, self.min_side), high), min(max(height, self.min_side), high)


@dataclass(frozen=True)
class FromInput:
    """An output size that follows an input image (the first, or the ``last``), optionally
    scaled to about ``area`` pixels keeping its aspect ratio, and fitted into ``bounds``;
    ``fallback`` when that image could not be seen (a URL the mock does not fetch)."""

    fallback: tuple[int, int]
    bounds: OutputBounds
    last: bool = False
    area: int | None = None

    def size_for(self, input_size: tuple[int, int] | None) -> tuple[int, int]:
        if input_size is None:
            return self.fallback
        width, height = input_size
        if self.area is not None:
            scale = math.sqrt(self.area / (width * height))
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        return self.bounds.fit(width, height)

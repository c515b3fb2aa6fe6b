"""Input images as a request names them: a URL, or inline base64 data not yet decoded, and
the rules of the ``x-image`` keyword of the provider's request schema (schemes, encodings,
byte and pixel limits, formats). Telling a reference's kind is cheap, so it runs on the event
loop; decoding is the images layer's (``images/inputs.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import invalid_parameter
from .formats import data_uri

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

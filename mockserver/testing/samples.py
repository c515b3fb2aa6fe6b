"""Input images for users' tests: the repository's ``fixtures/images``, shipped with the
package so a test can send a real image without keeping one of its own."""

from __future__ import annotations

import base64
from pathlib import Path

from ..core.resources import data_dir

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
DEFAULT_SAMPLE = "input-512.png"


def samples_dir() -> Path:
    return data_dir("_fixtures/images", "fixtures/images")


def sample_names() -> list[str]:
    return sorted(path.name for path in samples_dir().iterdir() if path.suffix in MEDIA_TYPES)


def sample_image(name: str = DEFAULT_SAMPLE) -> bytes:
    if name not in sample_names():
        raise ValueError(f"no sample image {name!r}; there are: {', '.join(sample_names())}")
    return (samples_dir() / name).read_bytes()


def sample_data_uri(name: str = DEFAULT_SAMPLE) -> str:
    """The image as a ``data:image/...;base64,`` URI, ready for either provider's ``image``."""
    media_type = MEDIA_TYPES[Path(name).suffix]
    return f"data:{media_type};base64,{base64.b64encode(sample_image(name)).decode()}"

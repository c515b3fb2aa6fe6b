"""The provider-neutral edit job: what every provider's request comes down to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from .references import ImageReference, ImageRules
from .sizes import FromInput

SEED_LIMIT = 2**31


@dataclass(slots=True)
class EditJob:
    model: str
    prompt: str
    images: tuple[ImageReference, ...]
    image_rules: ImageRules
    n: int
    size: tuple[int, int] | FromInput
    inline_output: bool  # the images go in the answer (base64), not behind links
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



"""From an edit job to its output images: decode the inputs, derive each image's render
spec, and draw the PNGs when the response carries them."""

from __future__ import annotations

import os
from dataclasses import dataclass

import anyio
import anyio.to_thread

from ..core.formats import AllowedHost
from ..core.job import EditJob, effective_seed, fingerprint
from ..core.sizes import FromInput
from .cache import PngCache
from .fetch import allowed_url, fetch_image
from .inputs import DecodedImage, decode_image, decode_inline
from .render import CAPTION_LIMIT, PALETTE_LIMIT, RenderSpec, render_image


@dataclass(slots=True)
class OutputImage:
    spec: RenderSpec
    png: bytes | None = None


@dataclass(slots=True)
class JobResult:
    width: int
    height: int
    seed: int
    images: list[OutputImage]
    inputs: list[DecodedImage]

    @property
    def warnings(self) -> list[str]:
        return [image.warning for image in self.inputs if image.warning]


class ImageFactory:
    """Does the CPU-bound work off the event loop, a bounded number of images at a time."""

    def __init__(self, cache_bytes: int, fetch_hosts: frozenset[AllowedHost] = frozenset(),
                 fetch_timeout: float = 10.0, threads: int | None = None) -> None:
        self.cache = PngCache(cache_bytes)
        self.fetch_hosts = fetch_hosts
        self.fetch_timeout = fetch_timeout
        self.threads = threads or os.cpu_count() or 2
        self._limiter: anyio.CapacityLimiter | None = None

    async def _in_thread(self, func, *args):
        # Created on first use: a limiter belongs to the running event loop. It bounds the
        # memory held by images being drawn, as well as CPU contention.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)

    def png(self, spec: RenderSpec) -> bytes:
        return self.cache.get_or_make(spec, lambda: render_image(spec))

    async def fetch_png(self, spec: RenderSpec) -> bytes:
        # A cached image is served from the event loop: the thread hop would cost more.
        cached = self.cache.get(spec)
        return cached if cached is not None else await self._in_thread(self.png, spec)

    async def complete(self, job: EditJob, strict: bool) -> JobResult:
        fetched = await self.fetch_inputs(job) if self.fetch_hosts else {}
        # A hop to a worker thread costs ~150 µs; pay it only when there is real work.
        if job.has_inline_images or fetched or job.inline_output:
            return await self._in_thread(self.complete_now, job, strict, fetched)
        return self.complete_now(job, strict, fetched)

    async def fetch_inputs(self, job: EditJob) -> dict[str, bytes]:
        """The bytes of the URL inputs whose hosts the user allowed, downloaded on the event loop."""
        return {
            ref.param: await fetch_image(ref.url, ref.param, job.image_rules.max_bytes, self.fetch_timeout)
            for ref in job.images
            if ref.url is not None and allowed_url(ref.url, ref.param, self.fetch_hosts)
        }

    def decode_inputs(self, job: EditJob, strict: bool, fetched: dict[str, bytes]) -> dict[str, DecodedImage]:
        """The input images that can be seen: inline ones, and those fetched."""
        decoded = {}
        for ref in job.images:
            if ref.is_inline:
                decoded[ref.param] = decode_inline(ref, job.image_rules, strict)
            elif ref.param in fetched:
                decoded[ref.param] = decode_image(ref.param, fetched[ref.param], job.image_rules, strict)
        return decoded

    def complete_now(self, job: EditJob, strict: bool, fetched: dict[str, bytes]) -> JobResult:
        decoded = self.decode_inputs(job, strict, fetched)
        inputs = list(decoded.values())
        if isinstance(job.size, FromInput):
            reference = job.images[-1 if job.size.last else 0]
            seen = decoded.get(reference.param)
            width, height = job.size.size_for(None if seen is None else (seen.width, seen.height))
        else:
            width, height = job.size
        identities = [decoded[ref.param].digest if ref.param in decoded else ref.url for ref in job.images]
        digest = fingerprint(job, identities, (width, height))
        seed = effective_seed(job, digest)
        palette = tuple(colour for image in inputs for colour in image.palette)[:PALETTE_LIMIT]
        specs = [
            RenderSpec(width, height, seed, index, digest[:16], job.prompt[:CAPTION_LIMIT], job.model, palette)
            for index in range(job.n)
        ]
        with_bytes = job.inline_output
        images = [OutputImage(spec, self.png(spec) if with_bytes else None) for spec in specs]
        return JobResult(width, height, seed, images, inputs)

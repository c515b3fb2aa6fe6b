"""What one request can make the mock draw, hold or serve is bounded by what its provider can
answer: output sizes, served links (forged ones too) and the render cache."""

from __future__ import annotations

import base64
import tracemalloc
import zlib
from struct import pack

import orjson
import pytest
from conftest import make_client
from hypothesis import given
from hypothesis import strategies as st
from imaging import b64_png, data_uri, open_png

from mockserver.core.schemas import load_schema
from mockserver.core.settings import DEFAULT_URL_SECRET
from mockserver.core.sizes import OutputBounds
from mockserver.http.links import LinkSigner
from mockserver.images.cache import PngCache
from mockserver.images.render import CAPTION_LIMIT, RenderSpec, render_image

MV = "/v1/images/generations"
MV_RULE = load_schema("modelverse", "request")["x-output-size"]
MV_BOUNDS = OutputBounds(MV_RULE["maxPixels"], MV_RULE["maxAspectRatio"])
PT_MAX_PIXELS = load_schema("powertokens", "request")["properties"]["size"]["x-size"]["maxPixels"]


def png_declaring(width: int, height: int) -> bytes:
    """A small, valid 1-bit PNG of ``width`` x ``height`` (all black): cheap to send, not to draw."""
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return pack(">I", len(body)) + kind + body + pack(">I", zlib.crc32(kind + body))

    header = pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


# --- the rule ---------------------------------------------------------------------------------


@given(st.integers(1, 10**8), st.integers(1, 10**8))
def test_a_fitted_size_is_within_the_bounds_and_keeps_a_clamped_ratio(width, height):
    fitted = MV_BOUNDS.fit(width, height)
    assert MV_BOUNDS.admits(*fitted)
    ratio = MV_BOUNDS.max_aspect_ratio
    clamped = min(max(width / height, 1 / ratio), ratio)
    # The fitted ratio is the clamped input ratio, up to a pixel of rounding on each side.
    low = (fitted[0] - 1) / (fitted[1] + 1) if fitted[1] > 1 else 0
    assert low <= clamped <= (fitted[0] + 1) / max(1, fitted[1] - 1)


@given(st.integers(1, 4096), st.integers(1, 4096))
def test_a_size_within_the_bounds_is_kept(width, height):
    if MV_BOUNDS.admits(width, height):
        assert MV_BOUNDS.fit(width, height) == (width, height)


def test_the_documented_examples_of_the_rule():
    assert MV_BOUNDS.fit(64, 48) == (64, 48)
    assert MV_BOUNDS.fit(7000, 7000) == (2048, 2048)
    assert MV_BOUNDS.fit(50_000_000, 1) == (8, 1)
    assert MV_BOUNDS.fit(1, 50_000_000) == (1, 8)
    assert MV_BOUNDS.fit(16000, 1000) == (5792, 724)


# --- over HTTP ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("declared", "expected"), [
    ((7000, 7000), (2048, 2048)),
    ((50_000_000, 1), (8, 1)),
    ((3000, 3000), (2048, 2048)),
    ((640, 480), (640, 480)),
])
def test_modelverse_outputs_are_fitted_into_its_range(declared, expected):
    image = data_uri(png_declaring(*declared))
    with make_client() as client:
        for response_format in ("b64_json", "url"):
            response = client.post(MV, json={"model": "Qwen/Qwen-Image-Edit", "prompt": "p", "image": image,
                                             "n": 2, "response_format": response_format})
            assert response.status_code == 200, response.text
            for item in response.json()["data"]:
                if response_format == "b64_json":
                    png = b64_png(item["b64_json"])
                else:
                    png = open_png(client.get(item["url"]).content)
                assert png.size == expected


def test_a_truncated_jpeg_declaring_a_large_image_is_refused():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((3000, 3000), 60).convert("RGB").save(buffer, "JPEG", quality=30)
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 3]
    with make_client() as client:
        response = client.post(MV, json={"model": "Qwen/Qwen-Image-Edit", "prompt": "p",
                                         "image": data_uri(truncated, "jpeg")})
    assert response.status_code == 400
    assert "could not be decoded" in response.json()["error"]["message"]


def test_rendering_the_widest_powertokens_size_draws_no_giant_caption_panel():
    tracemalloc.start()
    try:
        png = render_image(RenderSpec(PT_MAX_PIXELS, 1, 1, 0, "0" * 16, "x" * CAPTION_LIMIT, "qwen-image-2.0-pro"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert open_png(png).size == (PT_MAX_PIXELS, 1)
    # The image itself is 4 MB (one byte a pixel); a full-width panel was 75 MB.
    assert peak < 24 * 2**20, peak


# --- links --------------------------------------------------------------------------------------


def forged(spec: list, provider: str = "modelverse", expires: int = 2**31, count: int = 1, offset: str = "0") -> str:
    signer = LinkSigner(DEFAULT_URL_SECRET)
    payload = orjson.dumps([spec, provider, expires, count])
    token = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(signer._signature(payload)).rstrip(b"=").decode()
    return f"/files/{token}.{signature}.{offset}.png"


def spec(width=8, height=8, caption="c", palette=()) -> list:
    return [width, height, 1, 0, "0123456789abcdef", caption, "Qwen/Qwen-Image-Edit", list(palette)]


@pytest.mark.parametrize(("link", "why"), [
    (forged(spec(2049, 2049)), "more pixels than modelverse answers with"),
    (forged(spec(5000, 600)), "within the pixels, beyond the aspect ratio"),
    (forged(spec(4096, 1024), provider="powertokens"), "fine for powertokens: explicit sizes have no ratio bound"),
    (forged(spec(-8, -8)), "negative sides with a positive product"),
    (forged(spec(True, 8)), "a boolean is not a width"),
    (forged(spec(8.0, 8)), "nor is a float"),
    (forged(spec(caption="x" * (CAPTION_LIMIT + 1))), "a caption longer than any the mock writes"),
    (forged(spec(palette=["#zzzzzz"])), "not a colour"),
    (forged(spec(palette=["#000000"] * 300)), "more colours than the mock draws"),
    (forged(spec(), count="2"), "a count that is not a number"),
    (forged(spec(), expires=-1), "a negative expiry"),
    (forged(spec(), offset="\u00b2"), "a superscript two is not a digit"),
    (forged(spec(), offset="\u0661"), "nor an Arabic-Indic one"),
    (forged(spec(), offset="0" * 5000), "nor thousands of digits"),
    (forged(spec(), offset="1"), "past the count"),
])
def test_forged_links_are_held_to_the_providers_bounds(link, why):
    with make_client() as client:
        response = client.get(link)
    if "fine for" in why:
        assert response.status_code == 200
        assert open_png(response.content).size == (4096, 1024)
    else:
        assert response.status_code == 404, why
        assert response.json()["error"]["code"] == "not_found"


# --- the render cache -------------------------------------------------------------------------------


def test_the_render_cache_counts_what_it_holds():
    cache = PngCache(10**9)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            spec_ = RenderSpec.from_list(orjson.loads(orjson.dumps(
                [1, 1, i, 0, "0123456789abcdef", f"{i:05d}" * 32, "qwen-image-2.0-pro", ["#aabbcc"] * 8])))
            cache.get_or_make(spec_, lambda: bytes(70))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The keys (captions, palettes) cost ~15 times the PNGs here; they must be counted.
    assert held * 0.8 <= cache.size <= held * 1.5, (held, cache.size)


def test_the_render_cache_stays_within_its_bound():
    cache = PngCache(200_000)
    for i in range(1000):
        cache.get_or_make(RenderSpec(1, 1, i, 0, "0" * 16, "c" * CAPTION_LIMIT, "m"), lambda: bytes(100))
    assert cache.size <= 200_000
    assert 0 < len(cache) < 1000


def test_an_input_size_beyond_the_pixel_guard_is_still_refused_undecoded():
    big = data_uri(png_declaring(10_000, 5_001))
    with make_client() as client:
        response = client.post(MV, json={"model": "Qwen/Qwen-Image-Edit", "prompt": "p", "image": big})
    assert response.status_code == 400
    assert "decompression bomb" in response.json()["error"]["message"]

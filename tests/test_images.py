"""Input images (inline decoding, rejections, the decompression-bomb guard, size warnings),
output images (PNG of the requested size and count, as links and as base64) and image links
(expiry, tampering)."""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import time
import zlib
from pathlib import Path

import httpx
import jsonschema
import pytest
from conftest import AUTH, make_client
from imaging import b64_png, data_uri, image_bytes, open_png
from PIL import Image, ImageFile
from starlette.testclient import TestClient

from mockserver import Settings, create_app
from mockserver.core.settings import DEFAULT_URL_SECRET
from mockserver.http.links import Link, LinkSigner
from mockserver.images.render import RenderSpec

ROOT = Path(__file__).resolve().parent.parent
PT, MV = "/v1/images/edits", "/v1/images/generations"
PT_IMAGE = "input.messages[0].content[0].image"
MV_IMAGE = "image"
MAX_IMAGE_BYTES = 10 * 1024 * 1024
LIFETIME = {"powertokens": 24 * 3600, "modelverse": 7 * 24 * 3600}
FROZEN = 1_750_000_000


def schema(provider: str, name: str) -> dict:
    return json.loads((ROOT / "schemas" / provider / f"{name}.json").read_text())


def pt_with_images(body: dict, *images: str) -> dict:
    content = [{"image": image} for image in images] + [{"text": "Replace the background with a seaside sunset"}]
    body["input"]["messages"][0]["content"] = content
    return body


def post_image(client, provider: str, body: dict, image: str):
    """Post ``body`` with ``image`` as its (first) input image."""
    if provider == "powertokens":
        return client.post(PT, json=pt_with_images(body, image))
    return client.post(MV, json={**body, "image": image})


def image_field(provider: str) -> str:
    return PT_IMAGE if provider == "powertokens" else MV_IMAGE


def assert_invalid_image(response, provider: str, field: str | None = None) -> dict:
    """400 in the provider's envelope, naming the image field; returns the error object."""
    field = field or image_field(provider)
    assert response.status_code == 400, response.text
    body = response.json()
    jsonschema.validate(body, schema(provider, "error"))
    error = body["error"]
    if provider == "powertokens":
        assert error["code"] == "InvalidParameter"
        assert error["param"] == field
    else:
        assert error["code"] == "param_error"
        assert error["param"] == response.headers["x-request-id"]
    assert field in error["message"], error["message"]
    return error


@pytest.fixture
def body(request, powertokens_request, modelverse_request) -> dict:
    """The seed request of the provider the test is parametrised with."""
    return powertokens_request if request.node.callspec.params["provider"] == "powertokens" else modelverse_request


BOTH = pytest.mark.parametrize("provider", ["powertokens", "modelverse"])


# --- accepted input formats -------------------------------------------------------------


def _rgb_bytes(fmt: str, size=(64, 48), colour=(10, 120, 220)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


ACCEPTED = [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tiff")]


@BOTH
@pytest.mark.parametrize(("fmt", "subtype"), ACCEPTED)
def test_inline_image_formats_are_accepted_as_data_uri(client, provider, body, fmt, subtype):
    body["response_format"] = "b64_json"
    body["n"] = 1
    if provider == "powertokens":
        body["size"] = "512*512"
    response = post_image(client, provider, body, data_uri(_rgb_bytes(fmt), subtype))
    assert response.status_code == 200, response.text
    image = b64_png(response.json()["data"][0]["b64_json"])
    assert image.size == ((512, 512) if provider == "powertokens" else (64, 48))


@pytest.mark.parametrize(("fmt", "subtype"), ACCEPTED)
def test_modelverse_accepts_bare_base64(client, modelverse_request, fmt, subtype):
    modelverse_request["image"] = base64.b64encode(_rgb_bytes(fmt, size=(70, 50))).decode()
    modelverse_request["response_format"] = "b64_json"
    response = client.post(MV, json=modelverse_request)
    assert response.status_code == 200, response.text
    assert b64_png(response.json()["data"][0]["b64_json"]).size == (70, 50)


def test_powertokens_rejects_bare_base64(client, powertokens_request):
    response = client.post(PT, json=pt_with_images(powertokens_request, base64.b64encode(image_bytes()).decode()))
    assert_invalid_image(response, "powertokens")


def test_powertokens_accepts_three_inline_images_and_names_the_bad_one(client, powertokens_request):
    good = data_uri(image_bytes())
    ok = client.post(PT, json=pt_with_images(powertokens_request, good, good, data_uri(_rgb_bytes("JPEG"), "jpeg")))
    assert ok.status_code == 200, ok.text
    bad = client.post(PT, json=pt_with_images(powertokens_request, good, good, data_uri(b"not an image at all")))
    assert_invalid_image(bad, "powertokens", "input.messages[0].content[2].image")


# --- rejected inline data and references ------------------------------------------------


def _ico() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buffer, format="ICO")
    return buffer.getvalue()


def _truncated_png() -> bytes:
    # A picture with real entropy, so the pixel data spans many bytes; keep the header.
    noise = Image.frombytes("RGB", (96, 96), random.Random(7).randbytes(96 * 96 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) > 2000
    return data[: len(data) // 2]


REJECTED_DATA = {
    "invalid-base64": "data:image/png;base64,***not base64***",
    "base64-bad-padding": "data:image/png;base64," + base64.b64encode(image_bytes()).decode()[:-3],
    "non-image-bytes": data_uri(b"hello, this is plain text and not an image"),
    "ico": data_uri(_ico(), "x-icon"),
    "ppm": data_uri(_rgb_bytes("PPM"), "x-portable-pixmap"),
    "pdf-magic": data_uri(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
    "empty": "data:image/png;base64,",
    "truncated-png": data_uri(_truncated_png()),
    "png-signature-only": data_uri(b"\x89PNG\r\n\x1a\n"),
}


@BOTH
@pytest.mark.parametrize("case", sorted(REJECTED_DATA))
def test_bad_inline_image_is_rejected_naming_the_field(client, provider, body, case):
    assert_invalid_image(post_image(client, provider, body, REJECTED_DATA[case]), provider)


@pytest.mark.parametrize(
    "value", ["not base64!", "aGVsbG8gd29ybGQ=", base64.b64encode(_ico()).decode(), "####"]
)
def test_modelverse_bad_bare_base64_is_rejected(client, modelverse_request, value):
    modelverse_request["image"] = value
    assert_invalid_image(client.post(MV, json=modelverse_request), "modelverse")


@BOTH
@pytest.mark.parametrize(
    "reference",
    [
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "gopher://example.com/1",
        "javascript:alert(1)",
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png,rawdata",
        "//example.com/a.png",
        "http:/example.com/a.png",
        "",
    ],
)
def test_unsupported_references_are_rejected(client, provider, body, reference):
    assert_invalid_image(post_image(client, provider, body, reference), provider)


@BOTH
def test_http_urls_are_accepted_and_never_fetched(client, provider, body):
    # 192.0.2.0/24 is TEST-NET-1: a fetch would hang or fail, so a quick 200 means no fetch.
    started = time.monotonic()
    response = post_image(client, provider, body, "http://192.0.2.1/never-fetched.png")
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 5


# --- decompression bombs -----------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int, complete: bool = True) -> bytes:
    """A 1-bit greyscale PNG claiming ``width`` x ``height``; with ``complete`` every row is
    present (all zero, so it compresses to almost nothing), otherwise one row only."""
    row = b"\x00" * (1 + (width + 7) // 8)
    rows = height if complete else 1
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(row * rows, 9))
        + _chunk(b"IEND", b"")
    )


BOMBS = {
    # Over the guard (50 MP) but under Pillow's own warning threshold (~89 MP).
    "8000x8000": bomb_png(8000, 8000),
    # Over Pillow's warning threshold.
    "10000x10000": bomb_png(10000, 10000),
    # Over Pillow's error threshold; only the header is honest about it.
    "100000x100000": bomb_png(100000, 100000, complete=False),
    "very-wide": bomb_png(2**24, 4, complete=False),
}


def test_bomb_fixtures_are_small_and_real():
    for name, data in BOMBS.items():
        assert len(data) < 20_000, name
    image = Image.open(io.BytesIO(BOMBS["8000x8000"]))
    assert image.size == (8000, 8000) and image.format == "PNG"


@BOTH
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_decompression_bomb_is_rejected_before_decoding(client, provider, body, bomb, monkeypatch):
    decoded_sizes: list[tuple[int, int]] = []
    original_load = ImageFile.ImageFile.load

    def recording_load(self, *args, **kwargs):
        decoded_sizes.append(self.size)
        return original_load(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    started = time.monotonic()
    response = post_image(client, provider, body, data_uri(BOMBS[bomb]))
    elapsed = time.monotonic() - started
    error = assert_invalid_image(response, provider)
    assert "pixel" in error["message"].lower(), error["message"]
    assert decoded_sizes == [], f"pixel data was decoded: {decoded_sizes}"
    assert elapsed < 2, elapsed


def test_image_just_under_the_pixel_guard_is_accepted(client, powertokens_request):
    # 7000x7000 = 49 MP, every row present: a real (if oversized) image, not a bomb.
    powertokens_request.update(n=1, size="512*512", response_format="url")
    response = client.post(PT, json=pt_with_images(powertokens_request, data_uri(bomb_png(7000, 7000))))
    assert response.status_code == 200, response.text
    assert any("7000x7000" in warning for warning in _warnings(response))


# --- the 10 MB limit on image bytes ------------------------------------------------------


def png_of_exactly(total: int) -> bytes:
    """A valid 64x48 PNG padded with a private ancillary chunk to ``total`` bytes."""
    png = image_bytes()
    pad = total - len(png) - 12
    assert pad >= 0
    padded = png[:33] + _chunk(b"prVt", b"\x00" * pad) + png[33:]
    assert len(padded) == total
    return padded


@BOTH
def test_image_of_exactly_10_mb_is_accepted(client, provider, body):
    response = post_image(client, provider, body, data_uri(png_of_exactly(MAX_IMAGE_BYTES)))
    assert response.status_code == 200, response.text


@BOTH
@pytest.mark.parametrize("extra", [1, 3 * 1024 * 1024])
def test_image_over_10_mb_is_rejected(client, provider, body, extra):
    error = assert_invalid_image(post_image(client, provider, body, data_uri(png_of_exactly(MAX_IMAGE_BYTES + extra))), provider)
    message = error["message"]
    assert str(MAX_IMAGE_BYTES) in message or "10 MB" in message or "10MB" in message, message


def test_modelverse_bare_base64_over_10_mb_is_rejected(client, modelverse_request):
    modelverse_request["image"] = base64.b64encode(png_of_exactly(MAX_IMAGE_BYTES + 1)).decode()
    assert_invalid_image(client.post(MV, json=modelverse_request), "modelverse")


# --- output images: count, size, format ---------------------------------------------------


def _distinct(blobs: list[bytes]) -> None:
    assert len(set(blobs)) == len(blobs), "images within one response are identical"


def test_powertokens_url_mode_links_serve_pngs_over_http(live_server, powertokens_request):
    powertokens_request.update(n=3, size="640*480", response_format="url")
    response = httpx.post(f"{live_server.base_url}{PT}", json=powertokens_request, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 3
    blobs = []
    for item in data:
        assert "b64_json" not in item
        assert item["url"].startswith(f"{live_server.base_url}/files/") and item["url"].endswith(".png")
        image = httpx.get(item["url"], timeout=30)  # no credentials needed, like a signed URL
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert open_png(image.content).size == (640, 480)
        blobs.append(image.content)
    _distinct(blobs)


def test_modelverse_url_mode_links_serve_pngs_over_http(live_server, modelverse_request):
    modelverse_request.update(n=4, image=data_uri(image_bytes(400, 300)))
    response = httpx.post(f"{live_server.base_url}{MV}", json=modelverse_request, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 4
    blobs = []
    for item in data:
        assert "b64_json" not in item
        image = httpx.get(item["url"], timeout=30)
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert open_png(image.content).size == (400, 300)
        blobs.append(image.content)
    _distinct(blobs)


def test_head_on_a_link_answers_like_get(live_server, modelverse_request):
    response = httpx.post(f"{live_server.base_url}{MV}", json=modelverse_request, headers=AUTH, timeout=30)
    url = response.json()["data"][0]["url"]
    head = httpx.head(url, timeout=30)
    assert head.status_code == 200
    assert head.headers["content-type"] == "image/png"
    assert head.content == b""


def test_powertokens_b64_json_is_plain_base64_png(client, powertokens_request):
    powertokens_request.update(n=2, size="512x768", response_format="b64_json")
    response = client.post(PT, json=powertokens_request)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2
    blobs = []
    for item in data:
        assert "url" not in item
        value = item["b64_json"]
        assert not value.startswith("data:")
        png = base64.b64decode(value, validate=True)
        assert open_png(png).size == (512, 768)
        blobs.append(png)
    _distinct(blobs)


def test_modelverse_b64_json_is_a_data_uri_by_default(client, modelverse_request):
    modelverse_request.update(n=3, response_format="b64_json")
    response = client.post(MV, json=modelverse_request)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 3
    blobs = []
    for item in data:
        assert "url" not in item
        prefix, _, payload = item["b64_json"].partition(",")
        assert prefix == "data:image/png;base64"
        png = base64.b64decode(payload, validate=True)
        assert open_png(png).size == (64, 48)
        blobs.append(png)
    _distinct(blobs)


def _plain_b64_client(how: str) -> TestClient:
    if how == "setting":
        return make_client(modelverse_b64_style="plain")
    return TestClient(create_app(Settings.from_env({"QWEN_MOCK_MODELVERSE_B64": "plain"})), headers=AUTH)


@pytest.mark.parametrize("how", ["setting", "env"])
def test_modelverse_b64_json_plain_style(how, modelverse_request):
    with _plain_b64_client(how) as plain_client, make_client() as default_client:
        modelverse_request.update(n=2, response_format="b64_json")
        response = plain_client.post(MV, json=modelverse_request)
        assert response.status_code == 200, response.text
        values = [item["b64_json"] for item in response.json()["data"]]
        default = [item["b64_json"] for item in default_client.post(MV, json=modelverse_request).json()["data"]]
    for value, default_value in zip(values, default, strict=True):
        assert not value.startswith("data:")
        png = base64.b64decode(value, validate=True)
        assert open_png(png).size == (64, 48)
        assert default_value == "data:image/png;base64," + value


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (data_uri(image_bytes(400, 300)), (400, 300)),
        (data_uri(_rgb_bytes("JPEG", size=(333, 517)), "jpeg"), (333, 517)),
        (base64.b64encode(_rgb_bytes("WEBP", size=(390, 401))).decode(), (390, 401)),
        ("https://example.com/source.png", (1024, 1024)),
        ("http://example.com/a-2000x100.png", (1024, 1024)),
    ],
)
def test_modelverse_output_size_follows_the_input_image(client, modelverse_request, image, expected):
    modelverse_request.update(image=image, n=2, response_format="b64_json")
    response = client.post(MV, json=modelverse_request)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2
    assert [b64_png(item["b64_json"]).size for item in data] == [expected, expected]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("1536*1024", (1536, 1024)),
        ("1024x1536", (1024, 1536)),
        ("600x437", (600, 437)),
        ("4096*64", (4096, 64)),
        ("64x4096", (64, 4096)),
    ],
)
def test_powertokens_output_is_exactly_the_requested_size(client, powertokens_request, size, expected):
    powertokens_request.update(size=size, n=1, response_format="b64_json")
    response = client.post(PT, json=powertokens_request)
    assert response.status_code == 200, response.text
    assert b64_png(response.json()["data"][0]["b64_json"]).size == expected


def test_powertokens_default_size_is_512(client, powertokens_request):
    del powertokens_request["size"]
    powertokens_request.update(n=1, response_format="b64_json")
    response = client.post(PT, json=powertokens_request)
    assert b64_png(response.json()["data"][0]["b64_json"]).size == (512, 512)


# --- recommended side lengths: warn, or reject in strict mode -----------------------------


def _warnings(response) -> list[str]:
    header = response.headers.get("x-mock-warnings")
    return [] if header is None else json.loads(header)


@BOTH
@pytest.mark.parametrize(
    ("width", "height", "recommended"),
    [
        (64, 48, False),
        (383, 384, False),
        (384, 383, False),
        (384, 384, True),
        (3072, 384, True),
        (384, 3072, True),
        (3073, 384, False),
        (384, 3073, False),
    ],
)
def test_sides_outside_the_recommended_range_warn_or_fail_in_strict_mode(provider, body, width, height, recommended):
    image = data_uri(image_bytes(width, height))
    with make_client() as lenient, make_client(strict=True) as strict:
        response = post_image(lenient, provider, copy_of(body), image)
        assert response.status_code == 200, response.text
        strict_response = post_image(strict, provider, copy_of(body), image)
    if recommended:
        assert _warnings(response) == []
        assert strict_response.status_code == 200, strict_response.text
    else:
        warnings = _warnings(response)
        assert len(warnings) == 1, warnings
        assert image_field(provider) in warnings[0] and f"{width}x{height}" in warnings[0], warnings
        assert_invalid_image(strict_response, provider)


def copy_of(body: dict) -> dict:
    return json.loads(json.dumps(body))


# --- links: lifetime, expiry, tampering ----------------------------------------------------


def token_of(url: str) -> str:
    name = url.rsplit("/", 1)[1]
    assert name.endswith(".png")
    return name[: -len(".png")]


def issue_links(provider: str, body: dict, frozen: int = FROZEN) -> list[str]:
    with make_client(frozen_time=frozen) as frozen_client:
        if provider == "powertokens":
            body.update(n=2, size="512*512")
            response = frozen_client.post(PT, json=body)
        else:
            body.update(n=2)
            response = frozen_client.post(MV, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["created"] == frozen
    return [item["url"] for item in response.json()["data"]]


@BOTH
def test_link_lifetime_is_the_providers(provider, body):
    signer = LinkSigner(DEFAULT_URL_SECRET)
    for url in issue_links(provider, body):
        link = signer.verify(token_of(url))
        assert link.provider == provider
        assert link.expires == FROZEN + LIFETIME[provider]


def _path(url: str) -> str:
    return httpx.URL(url).raw_path.decode()


@BOTH
def test_link_works_until_it_expires_then_answers_403(provider, body):
    url = issue_links(provider, body)[0]
    lifetime = LIFETIME[provider]
    with make_client(frozen_time=FROZEN) as same_time:
        fresh = same_time.get(_path(url))
    with make_client(frozen_time=FROZEN + lifetime - 1) as just_before:
        before = just_before.get(_path(url))
    with make_client(frozen_time=FROZEN + lifetime + 1) as just_after:
        after = just_after.get(_path(url))
    with make_client(frozen_time=FROZEN + 10 * lifetime) as much_later:
        later = much_later.get(_path(url))

    for response in (fresh, before):
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        open_png(response.content)
    assert fresh.content == before.content
    for response in (after, later):
        assert_expired(response, provider)


def assert_expired(response, provider: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    jsonschema.validate(body, schema(provider, "error"))
    if provider == "modelverse":
        assert body["error"]["param"] == response.headers["x-request-id"]


def _spec(**changes) -> RenderSpec:
    spec = RenderSpec(width=64, height=64, seed=1, index=0, fingerprint="0" * 16, caption="hand made", model="m")
    return spec._replace(**changes)


@BOTH
def test_hand_signed_links_work_and_expire_on_the_real_clock(client, provider):
    signer = LinkSigner(DEFAULT_URL_SECRET)
    now = int(time.time())
    valid = signer.token(Link(_spec(), provider, now + 3600))
    response = client.get(f"/files/{valid}.png")
    assert response.status_code == 200
    assert open_png(response.content).size == (64, 64)
    expired = signer.token(Link(_spec(), provider, now - 60))
    assert_expired(client.get(f"/files/{expired}.png"), provider)


def _flip(text: str, at: int = 5) -> str:
    """``text`` with one character in the middle changed (not the last one, whose low bits
    may be padding that base64 decoding ignores)."""
    return text[:at] + ("A" if text[at] != "A" else "Q") + text[at + 1 :]


def test_tampered_and_garbage_tokens_answer_404_json(client, powertokens_request):
    powertokens_request.update(n=1, size="512*512")
    url = client.post(PT, json=powertokens_request).json()["data"][0]["url"]
    token = token_of(url)
    assert client.get(f"/files/{token}.png").status_code == 200

    payload, _, signature = token.partition(".")
    # Another real link's payload under this link's signature.
    powertokens_request["seed"] = 1
    other = token_of(client.post(PT, json=powertokens_request).json()["data"][0]["url"])
    forged_payload = other.partition(".")[0]
    assert forged_payload != payload
    huge = LinkSigner(DEFAULT_URL_SECRET).token(
        Link(_spec(width=100_000, height=100_000), "powertokens", int(time.time()) + 3600)
    )
    unknown_provider = LinkSigner(DEFAULT_URL_SECRET).token(Link(_spec(), "nobody", int(time.time()) + 3600))
    other_secret = LinkSigner("another-secret").token(Link(_spec(), "powertokens", int(time.time()) + 3600))
    candidates = {
        "signature-flipped": f"{payload}.{_flip(signature)}",
        "payload-flipped": f"{_flip(payload)}.{signature}",
        "payload-changed": f"{forged_payload}.{signature}",
        "no-signature": payload,
        "empty-signature": f"{payload}.",
        "other-secret": other_secret,
        "huge-image": huge,
        "unknown-provider": unknown_provider,
        "garbage": "garbage",
        "dots": "...",
        "not-base64": "!!!.???",
        "long": "A" * 50_000 + ".B",
    }
    for name, candidate in candidates.items():
        response = client.get(f"/files/{candidate}.png")
        assert response.status_code == 404, (name, response.status_code, response.text[:200])
        assert response.headers["content-type"].startswith("application/json"), name
        assert "error" in response.json(), name
        assert response.headers["x-request-id"], name


# --- prompts in any script ------------------------------------------------------------------

PROMPTS = {
    "latin-1": "Café crème",
    "latin-extended": "Ā ő ž",
    "chinese": "把背景换成海边日落",
    "japanese": "背景を夕焼けの海に",
    "emoji": "sunset 🌅 over the sea",
    "hebrew": "שקיעה על הים",
    "controls": "line one\nline two\ttab\u0007bell",
    "zero-width": "sun\u200bset",
}


def _with_prompt(provider: str, body: dict, prompt: str) -> dict:
    if provider == "powertokens":
        body["input"]["messages"][0]["content"][-1]["text"] = prompt
        body.update(n=1, size="512*512")
    else:
        body.update(prompt=prompt, n=1)
    return body


@BOTH
@pytest.mark.parametrize("script", sorted(PROMPTS))
def test_prompts_in_any_script_render_as_b64_json(client, provider, body, script):
    body = _with_prompt(provider, body, PROMPTS[script])
    body["response_format"] = "b64_json"
    response = client.post(PT if provider == "powertokens" else MV, json=body)
    assert response.status_code == 200, response.text[:300]
    b64_png(response.json()["data"][0]["b64_json"])


@BOTH
@pytest.mark.parametrize("script", sorted(PROMPTS))
def test_prompts_in_any_script_render_as_links(client, provider, body, script):
    body = _with_prompt(provider, body, PROMPTS[script])
    response = client.post(PT if provider == "powertokens" else MV, json=body)
    assert response.status_code == 200, response.text[:300]
    image = client.get(_path(response.json()["data"][0]["url"]))
    assert image.status_code == 200, image.text[:300]
    open_png(image.content)


def test_links_of_one_job_share_a_signature_but_reach_only_its_images(client, powertokens_request):
    """Image i of a job is <payload>.<signature>.<i>: within the job's n any offset is one of
    its images; past n there is nothing, and the signature does not stretch to more."""
    powertokens_request.update(n=3, size="512*512")
    urls = [item["url"] for item in client.post(PT, json=powertokens_request).json()["data"]]
    tokens = [url.rsplit("/files/", 1)[1].removesuffix(".png") for url in urls]
    signed = {token.rsplit(".", 1)[0] for token in tokens}
    assert len(signed) == 1 and [token.rsplit(".", 1)[1] for token in tokens] == ["0", "1", "2"]
    bodies = [client.get(f"/files/{token}.png").content for token in tokens]
    assert len(set(bodies)) == 3
    [shared] = signed
    for offset in ("3", "99", "-1", "x", ""):
        response = client.get(f"/files/{shared}.{offset}.png")
        assert response.status_code == 404, offset
        assert response.json()["error"]["code"] == "not_found"


# --- one rule for references, in any letter case (RFC 3986 schemes, RFC 2397 data URIs) --------


@pytest.mark.parametrize("provider", ["powertokens", "modelverse"])
@pytest.mark.parametrize("prefix", ["HTTPS://", "Http://", "hTTp://"])
def test_url_schemes_are_accepted_in_any_case(client, provider, body, prefix):
    response = post_image(client, provider, body, f"{prefix}example.com/a.png")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("provider", ["powertokens", "modelverse"])
@pytest.mark.parametrize("prefix", ["DATA:IMAGE/PNG;BASE64,", "Data:Image/png;Base64,"])
def test_data_uris_are_accepted_in_any_case(client, provider, body, prefix):
    png = base64.b64encode(_rgb_bytes("PNG")).decode()
    response = post_image(client, provider, body, prefix + png)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("provider", ["powertokens", "modelverse"])
def test_messages_describe_quoted_images_instead_of_quoting_base64(client, provider, body):
    image = "data:image/png;base64," + base64.b64encode(_rgb_bytes("PNG")).decode()
    if provider == "powertokens":
        message = {"role": "user", "content": [{"image": image}, {"text": "snow"}]}
        bad = {**body, "input": {"messages": [message, message]}}  # one message only
    else:
        bad = {**body, "image": image, "n": [image]}
    response = client.post(PT if provider == "powertokens" else MV, json=bad)
    assert response.status_code == 400
    text = response.json()["error"]["message"] + response.headers["x-mock-violations"]
    assert "base64," not in text and image[22:80] not in text
    if provider == "powertokens":
        assert "<image/png, about" in text

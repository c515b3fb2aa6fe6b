"""Output images are a pure function of the request: byte-identical across processes,
restarts and response formats; different for any change that matters; pinned by golden
hashes so rendering drift (another machine, another Pillow) is caught."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from conftest import AUTH, make_client
from imaging import data_uri, image_bytes, open_png
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "fixtures" / "golden"
PT, MV = "/v1/images/edits", "/v1/images/generations"
PATHS = {"powertokens": PT, "modelverse": MV}
# Frozen at the time of the test run, so the links it issues are still valid on the
# unfrozen session server too.
FROZEN = str(int(time.time()))
BOTH = pytest.mark.parametrize("provider", ["powertokens", "modelverse"])


def b64_bytes(value: str) -> bytes:
    return base64.b64decode(value.rpartition("base64,")[2], validate=True)


def pngs(response) -> list[bytes]:
    """The PNGs of a b64_json response."""
    assert response.status_code == 200, response.text
    return [b64_bytes(item["b64_json"]) for item in response.json()["data"]]


def pixels(png: bytes) -> bytes:
    """What a person sees: the decoded RGB pixels (two PNGs can differ only in unused
    palette entries and still show the same picture)."""
    return open_png(png).convert("RGB").tobytes()


def assert_different_pictures(first: bytes, second: bytes) -> None:
    assert first != second, "same bytes"
    assert pixels(first) != pixels(second), "different bytes, but the same picture"


def small(provider: str, body: dict, n: int = 1, response_format: str = "b64_json") -> dict:
    body = copy.deepcopy(body)
    body.update(n=n, response_format=response_format)
    if provider == "powertokens":
        body["size"] = "512*512"
    return body


@pytest.fixture
def body(request, powertokens_request, modelverse_request) -> dict:
    provider = request.node.callspec.params["provider"]
    return small(provider, powertokens_request if provider == "powertokens" else modelverse_request)


def render(client, provider: str, body: dict, **headers) -> list[bytes]:
    return pngs(client.post(PATHS[provider], json=body, headers=headers or None))


# --- across processes ----------------------------------------------------------------------


def test_separate_processes_give_identical_bytes_and_serve_each_others_links(
    start_server, live_server, client, powertokens_request, modelverse_request
):
    env = {"QWEN_MOCK_FROZEN_TIME": FROZEN}
    a, b = start_server(env), start_server(env)
    headers = {**AUTH, "x-request-id": "determinism-1"}
    requests = {
        "powertokens": small("powertokens", powertokens_request, n=2),
        "modelverse": small("modelverse", modelverse_request, n=2),
    }
    issued: dict[str, list[str]] = {}
    expected: dict[str, list[bytes]] = {}

    for provider, body in requests.items():
        path = PATHS[provider]
        # b64_json: whole responses are identical, images byte for byte.
        from_a = httpx.post(a.base_url + path, json=body, headers=headers, timeout=30)
        from_b = httpx.post(b.base_url + path, json=body, headers=headers, timeout=30)
        assert from_a.json() == from_b.json()
        assert from_a.json()["created"] == int(FROZEN)
        images = pngs(from_a)
        assert len(images) == 2 and images == pngs(from_b)
        # The same bytes from the unfrozen session server and from the in-process app.
        assert pngs(httpx.post(live_server.base_url + path, json=body, headers=AUTH, timeout=30)) == images
        assert pngs(client.post(path, json=body)) == images
        expected[provider] = images

        # url: the same links (up to the host they were requested from).
        url_body = {**body, "response_format": "url"}
        links_a = httpx.post(a.base_url + path, json=url_body, headers=headers, timeout=30).json()
        links_b = httpx.post(b.base_url + path, json=url_body, headers=headers, timeout=30).json()
        assert json.dumps(links_a).replace(a.base_url, "") == json.dumps(links_b).replace(b.base_url, "")
        urls = [item["url"] for item in links_a["data"]]
        assert all(url.startswith(a.base_url + "/files/") for url in urls)
        issued[provider] = [url[len(a.base_url) :] for url in urls]

        # A link issued by A, served by A and by B: the same bytes as b64_json gave.
        for server in (a, b):
            fetched = [httpx.get(server.base_url + link, timeout=30) for link in issued[provider]]
            assert [r.status_code for r in fetched] == [200, 200]
            assert [r.content for r in fetched] == images

    a.stop()
    for provider, links in issued.items():
        fetched = [httpx.get(b.base_url + link, timeout=30) for link in links]
        assert [r.status_code for r in fetched] == [200, 200]
        assert [r.content for r in fetched] == expected[provider]
        # ... and by any other process holding the same key, such as the session server.
        assert [httpx.get(live_server.base_url + link, timeout=30).content for link in links] == expected[provider]
        # A mock with another signing key does not accept them.
        with make_client(url_secret="another-deployment") as other:
            assert [other.get(link).status_code for link in links] == [404, 404]


# --- within one process ----------------------------------------------------------------------


@BOTH
def test_url_and_b64_json_give_the_same_bytes(client, provider, body):
    body["n"] = 3
    images = render(client, provider, body)
    links = client.post(PATHS[provider], json={**body, "response_format": "url"})
    assert links.status_code == 200, links.text
    fetched = [client.get(httpx.URL(item["url"]).raw_path.decode()) for item in links.json()["data"]]
    assert [r.content for r in fetched] == images
    assert all(r.headers["content-type"] == "image/png" for r in fetched)


@BOTH
def test_same_request_twice_gives_the_same_bytes(client, provider, body):
    body["n"] = 2
    assert render(client, provider, body) == render(client, provider, body)
    with make_client() as fresh:  # no render cache shared with ``client``
        assert render(fresh, provider, body) == render(client, provider, body)


# Modelverse draws at the input image's size, and tests often send tiny images: the
# differences must survive there too.
OUTPUT_CASES = pytest.mark.parametrize(
    ("provider", "input_size"),
    [("powertokens", None), ("modelverse", (400, 300)), ("modelverse", (64, 48))],
    ids=["powertokens-512x512", "modelverse-400x300", "modelverse-64x48"],
)


def with_input_size(provider: str, body: dict, input_size) -> dict:
    if input_size is not None:
        assert provider == "modelverse"
        body["image"] = data_uri(image_bytes(*input_size))
    return body


@OUTPUT_CASES
def test_images_within_one_response_differ(client, powertokens_request, modelverse_request, provider, input_size):
    body = small(provider, powertokens_request if provider == "powertokens" else modelverse_request)
    with_input_size(provider, body, input_size)
    body["n"] = 6 if provider == "powertokens" else 4
    images = render(client, provider, body)
    assert len(images) == body["n"]
    assert len(set(images)) == len(images)
    assert len({pixels(image) for image in images}) == len(images), "images differ only in unused palette entries"
    # ... and each is still the same image on the next call.
    assert render(client, provider, body) == images


def _without_seed(provider: str, body: dict) -> dict:
    body = copy.deepcopy(body)
    body.pop("seed", None)
    return body


@BOTH
def test_absent_seed_is_reproducible_and_reported(client, provider, body):
    body = _without_seed(provider, body)
    first = client.post(PATHS[provider], json=body)
    second = client.post(
        PATHS[provider], json=body, headers={"Authorization": "Bearer another-key", "x-request-id": "other-request"}
    )
    assert pngs(first) == pngs(second)
    seed = first.headers["x-mock-seed"]
    assert seed == second.headers["x-mock-seed"]
    assert 0 <= int(seed) <= 2147483647
    if provider == "powertokens":
        assert first.json()["metadata"]["effective_seed"] == int(seed)

    # A different request derives a different seed, and a different image.
    other = copy.deepcopy(body)
    if provider == "powertokens":
        other["input"]["messages"][0]["content"][-1]["text"] += "!"
    else:
        other["prompt"] += "!"
    changed = client.post(PATHS[provider], json=other)
    assert changed.headers["x-mock-seed"] != seed
    assert_different_pictures(pngs(changed)[0], pngs(first)[0])


def test_modelverse_seed_minus_one_is_the_same_as_absent(client, modelverse_request):
    body = small("modelverse", modelverse_request)
    body.pop("seed", None)
    absent = client.post(MV, json=body)
    random_seed = client.post(MV, json={**body, "seed": -1})
    assert pngs(absent) == pngs(random_seed)
    assert absent.headers["x-mock-seed"] == random_seed.headers["x-mock-seed"]
    assert int(random_seed.headers["x-mock-seed"]) >= 0


@BOTH
@pytest.mark.parametrize("seed", [0, 1, 42, 2147483647])
def test_explicit_seed_is_reported(client, provider, body, seed):
    body["seed"] = seed
    response = client.post(PATHS[provider], json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-mock-seed"] == str(seed)
    if provider == "powertokens":
        assert response.json()["metadata"]["effective_seed"] == seed


# --- what matters and what does not ----------------------------------------------------------


def _pt_text(body: dict, text: str) -> None:
    body["input"]["messages"][0]["content"][-1]["text"] = text


def _pt_images(body: dict, *images: str) -> None:
    text = body["input"]["messages"][0]["content"][-1]
    body["input"]["messages"][0]["content"] = [{"image": image} for image in images] + [text]


RED = data_uri(image_bytes(colour=(200, 30, 60)))
BLUE = data_uri(image_bytes(colour=(30, 60, 200)))


def _one_pixel_off() -> str:
    image = Image.new("RGB", (64, 48), (200, 30, 60))
    image.putpixel((17, 11), (200, 30, 61))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return data_uri(buffer.getvalue())


RED_ONE_PIXEL_OFF = _one_pixel_off()

POWERTOKENS_CHANGES = {
    "prompt": lambda b: _pt_text(b, "Replace the background with a seaside sunrise"),
    "prompt-trailing-space": lambda b: _pt_text(b, "Replace the background with a seaside sunset "),
    "negative-prompt": lambda b: b.update(negative_prompt="low quality, blurry"),
    "negative-prompt-removed": lambda b: b.pop("negative_prompt"),
    "negative-prompt-empty": lambda b: b.update(negative_prompt=""),
    "image-url": lambda b: _pt_images(b, "https://example.com/other.webp"),
    "image-inline": lambda b: _pt_images(b, RED),
    "second-image": lambda b: _pt_images(b, "https://example.com/source.webp", RED),
    "seed": lambda b: b.update(seed=1),
    "seed-removed": lambda b: b.pop("seed"),
    "size": lambda b: b.update(size="512*513"),
    "size-transposed": lambda b: b.update(size="1024*512"),
    "watermark": lambda b: b.update(watermark=True),
    "prompt-extend": lambda b: b.update(prompt_extend=False),
}

MODELVERSE_CHANGES = {
    "prompt": lambda b: b.update(prompt="Convert to quick charcoal sketch"),
    "negative-prompt": lambda b: b.update(negative_prompt="blurry"),
    "negative-prompt-removed": lambda b: b.pop("negative_prompt"),
    "image-colour": lambda b: b.update(image=data_uri(image_bytes(*open_png(b64_bytes(b["image"])).size, colour=(30, 60, 200)))),
    "image-size": lambda b: b.update(image=data_uri(image_bytes(open_png(b64_bytes(b["image"])).width, 49))),
    "image-url": lambda b: b.update(image="https://example.com/source.png"),
    "seed": lambda b: b.update(seed=1),
    "strength": lambda b: b.update(strength=0.81),
    "strength-zero": lambda b: b.update(strength=0),
    "steps": lambda b: b.update(steps=21),
    "guidance-scale": lambda b: b.update(guidance_scale=2.6),
}


@pytest.mark.parametrize("change", sorted(POWERTOKENS_CHANGES))
def test_powertokens_change_that_matters_changes_the_image(client, powertokens_request, change):
    base = small("powertokens", powertokens_request)
    changed = copy.deepcopy(base)
    POWERTOKENS_CHANGES[change](changed)
    assert changed != base
    assert_different_pictures(render(client, "powertokens", changed)[0], render(client, "powertokens", base)[0])


@pytest.mark.parametrize("input_size", [(400, 300), (64, 48)], ids=["400x300", "64x48"])
@pytest.mark.parametrize("change", sorted(MODELVERSE_CHANGES))
def test_modelverse_change_that_matters_changes_the_image(client, modelverse_request, change, input_size):
    base = small("modelverse", modelverse_request)
    base["image"] = data_uri(image_bytes(*input_size, colour=(200, 30, 60)))
    base["seed"] = 0
    changed = copy.deepcopy(base)
    MODELVERSE_CHANGES[change](changed)
    assert changed != base
    assert_different_pictures(render(client, "modelverse", changed)[0], render(client, "modelverse", base)[0])


@BOTH
def test_one_pixel_of_the_input_image_changes_the_output(client, provider, body):
    results = []
    for image in (RED, RED_ONE_PIXEL_OFF):
        if provider == "powertokens":
            _pt_images(body, image)
        else:
            body["image"] = image
        results.append(render(client, provider, body)[0])
    assert_different_pictures(results[0], results[1])


def test_powertokens_image_order_matters(client, powertokens_request):
    body = small("powertokens", powertokens_request)
    _pt_images(body, RED, BLUE)
    forward = render(client, "powertokens", body)[0]
    _pt_images(body, BLUE, RED)
    assert_different_pictures(render(client, "powertokens", body)[0], forward)


POWERTOKENS_SAME = {
    "size-with-x": lambda b: b.update(size="512x512"),
    "size-default": lambda b: b.pop("size"),
    "watermark-default": lambda b: b.pop("watermark"),
    "prompt-extend-default": lambda b: b.pop("prompt_extend"),
    "unknown-field": lambda b: b.update(user="someone"),
}

MODELVERSE_SAME = {
    "strength-default": lambda b: b.update(strength=0.8),
    "steps-default": lambda b: b.update(steps=20),
    "guidance-default": lambda b: b.update(guidance_scale=2.5),
    "bare-base64": lambda b: b.update(image=b["image"].partition(",")[2]),
    "unknown-field": lambda b: b.update(user="someone", size="1024x1024"),
}


@pytest.mark.parametrize(
    ("provider", "change"),
    [("powertokens", name) for name in sorted(POWERTOKENS_SAME)] + [("modelverse", name) for name in sorted(MODELVERSE_SAME)],
)
def test_changes_that_do_not_matter_keep_the_image(client, powertokens_request, modelverse_request, provider, change):
    base = small(provider, powertokens_request if provider == "powertokens" else modelverse_request)
    changed = copy.deepcopy(base)
    (POWERTOKENS_SAME if provider == "powertokens" else MODELVERSE_SAME)[change](changed)
    assert render(client, provider, changed) == render(client, provider, base)


def test_modelverse_integer_and_float_spellings_are_the_same(client, modelverse_request):
    base = small("modelverse", modelverse_request)
    as_int = client.post(MV, content=json.dumps({**base, "strength": 1, "guidance_scale": 3}), headers=AUTH)
    as_float = client.post(MV, content=json.dumps({**base, "strength": 1.0, "guidance_scale": 3.0}), headers=AUTH)
    assert pngs(as_int) == pngs(as_float)


@BOTH
def test_json_formatting_does_not_matter(client, provider, body):
    compact = json.dumps(body, separators=(",", ":"))
    spaced = json.dumps(dict(reversed(list(body.items()))), indent=4)
    headers = {**AUTH, "content-type": "application/json"}
    first = client.post(PATHS[provider], content=compact, headers=headers)
    second = client.post(PATHS[provider], content=spaced, headers=headers)
    assert pngs(first) == pngs(second)


# --- golden images ---------------------------------------------------------------------------


def golden_cases() -> list[Path]:
    return sorted(GOLDEN.glob("*.json"))


def test_golden_fixtures_exist():
    names = {path.stem for path in golden_cases()}
    assert {"powertokens-seed42-512", "modelverse-seed7-64x48"} <= names
    for name in names:
        assert (GOLDEN / f"{name}.sha256").is_file(), name


@pytest.mark.parametrize("case", golden_cases(), ids=lambda path: path.stem)
def test_golden_image_hash(client, case):
    provider = case.stem.split("-", 1)[0]
    response = client.post(PATHS[provider], json=json.loads(case.read_text()))
    first = pngs(response)[0]
    open_png(first)
    digest = hashlib.sha256(first).hexdigest()
    recorded = case.with_suffix(".sha256")
    if os.environ.get("QWEN_MOCK_UPDATE_GOLDEN") == "1":
        recorded.write_text(digest + "\n")
    assert digest == recorded.read_text().split()[0], (
        f"{case.name}: the first image's bytes changed (rendering drift: another Pillow or zlib, or a change "
        "to render.py). If the change is intended, look at the new image and re-record with "
        "QWEN_MOCK_UPDATE_GOLDEN=1."
    )

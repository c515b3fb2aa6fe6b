"""The DashScope provider, ``POST /api/v1/services/aigc/multimodal-generation/generation``,
driven by the real ``dashscope`` SDK (``MultiModalConversation.call``) against the mock on a
free port of 127.0.0.1.

What the SDK does that these tests rely on (dashscope 2.0.2):

- it posts to ``dashscope.base_http_api_url + "/services/aigc/multimodal-generation/generation"``
  and reads ``dashscope.base_http_api_url`` at every call, so a monkeypatched attribute is
  enough (and is undone after each test);
- keyword arguments it does not consume (``size``, ``n``, ``seed``, ``negative_prompt``...)
  become ``parameters``; ``headers=`` adds request headers, ``async_request=True`` sends
  ``X-DashScope-Async: enable``;
- it never raises on an HTTP error: it returns ``status_code``, ``code``, ``message`` and
  ``request_id``, all read from the top level of a JSON body (``request_id`` from the body,
  not from the ``x-request-id`` header);
- an ``oss://`` reference is sent as is, with ``X-DashScope-OssResourceResolve: enable``.

Nothing here may reach the network: the SDK is pointed at 127.0.0.1 only, proxies are
cleared, and any connection or name lookup for another host fails the test.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import socket
import uuid

import httpx
import pytest
from conftest import LiveServer
from PIL import Image

dashscope = pytest.importorskip("dashscope", reason="the dashscope SDK is not installed (pip install dashscope)")
from dashscope import MultiModalConversation  # noqa: E402

PATH = "/api/v1/services/aigc/multimodal-generation/generation"
LOOPBACK = "127.0.0.1"
KEY = "sk-dashscope-test"
MAX_SEED = 2147483647
URL_IMAGE = "https://example.com/source.png"  # never fetched by the mock
OSS_IMAGE = "oss://bucket/path.png"  # never fetched by the mock

# The error codes SPEC.md lists for DashScope, by HTTP status.
SPEC_CODES = {
    400: {
        "InvalidParameter",
        "DataInspectionFailed",
        "InvalidParameter.DataInspection",
        "BadRequest.EmptyInput",
        "BadRequest.EmptyParameters",
        "BadRequest.EmptyModel",
        "InvalidURL",
    },
    401: {"InvalidApiKey"},
    403: {"AccessDenied", "AccessDenied.Unpurchased"},
    408: {"RequestTimeOut"},
    413: {"BadRequest.TooLarge"},
    429: {"Throttling", "Throttling.RateQuota", "Throttling.AllocationQuota"},
    500: {"InternalError", "InternalError.Algo"},
}

# What a call with ``X-DashScope-Async: enable`` gets: these models are synchronous only, and
# calls reported against the real service (qwen-image-2.0 with the header) get 403
# AccessDenied "current user api does not support asynchronous calls".
ASYNC_REFUSAL_STATUS = 403
ASYNC_REFUSAL_CODES = {"AccessDenied"}


# --- isolation: one server, the SDK pointed at it, nothing else reachable -------------------


@pytest.fixture(scope="module")
def server():
    live = LiveServer()
    yield live
    live.stop()


class NetworkLeak(ConnectionRefusedError):
    """A test tried to reach something other than 127.0.0.1."""


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuse, in this process, any connection or name lookup that is not for 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", LOOPBACK)
    monkeypatch.setenv("no_proxy", LOOPBACK)

    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] != LOOPBACK:
            raise NetworkLeak(f"this test may only connect to {LOOPBACK}, not {address!r}")

    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, LOOPBACK, LOOPBACK.encode()):
            raise NetworkLeak(f"this test may only connect to {LOOPBACK}, not look up {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


def point_sdk_at(monkeypatch, base_url: str) -> None:
    assert base_url.startswith(f"http://{LOOPBACK}:"), base_url
    monkeypatch.setattr(dashscope, "base_http_api_url", base_url + "/api/v1")


@pytest.fixture(autouse=True)
def sdk_at_server(server, monkeypatch):
    point_sdk_at(monkeypatch, server.base_url)


# --- inputs ---------------------------------------------------------------------------------


def png_bytes(width: int, height: int, colour=(200, 30, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


LANDSCAPE_PNG = png_bytes(640, 480, (200, 160, 40))  # 4:3
SQUARE = data_uri(png_bytes(512, 512, (40, 120, 200)))
LANDSCAPE = data_uri(LANDSCAPE_PNG)
PORTRAIT = data_uri(png_bytes(480, 800, (60, 180, 90)))  # 3:5


# --- calling, and reading what comes back ---------------------------------------------------


class Client:
    """The SDK against one mock, with this test's own ``X-Mock-Session``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = "dashscope-" + uuid.uuid4().hex

    def edit(
        self,
        *,
        model: str = "qwen-image-2.0-pro",
        images: list[str] | None = None,
        text: str = "Make it snow",
        content: list[dict] | None = None,
        api_key: str = KEY,
        headers: dict[str, str] | None = None,
        **kwargs,
    ):
        if content is None:
            content = [{"image": image} for image in (images if images is not None else [SQUARE])]
            content.append({"text": text})
        assert dashscope.base_http_api_url == self.base_url + "/api/v1"
        return MultiModalConversation.call(
            api_key=api_key,
            model=model,
            messages=[{"role": "user", "content": content}],
            headers={"X-Mock-Session": self.session, **(headers or {})},
            **kwargs,
        )

    def journal(self) -> list[dict]:
        response = httpx.get(f"{self.base_url}/__mock/requests", params={"session": self.session}, trust_env=False)
        assert response.status_code == 200, response.text
        return [entry for entry in response.json()["requests"] if entry["path"] == PATH]

    def add_scenario(self, **fields) -> None:
        response = httpx.post(
            f"{self.base_url}/__mock/scenarios", json={"session": self.session, **fields}, trust_env=False
        )
        assert response.status_code in (200, 201), response.text

    def download(self, url: str) -> tuple[bytes, Image.Image]:
        assert url.startswith(self.base_url + "/"), url
        response = httpx.get(url, timeout=30, trust_env=False)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        image.load()
        assert image.format == "PNG"
        return response.content, image


@pytest.fixture
def client(server) -> Client:
    return Client(server.base_url)


def describe(response) -> str:
    return f"{response.status_code} {response.code!r}: {response.message!r} (request {response.request_id!r})"


def header(response, name: str) -> str | None:
    return next((value for key, value in (response.headers or {}).items() if key.lower() == name), None)


def images_of(client: Client, response, n: int) -> tuple[tuple[int, int], list[bytes]]:
    """Check a 200 as the SDK returns it, download its images, and return their size and bytes."""
    assert response.status_code == 200, describe(response)
    assert response.request_id and response.request_id == header(response, "x-request-id")
    assert len(response.output.choices) == 1  # all n images in one choice
    [choice] = response.output.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    items = choice.message.content
    assert len(items) == n and all(list(item) == ["image"] for item in items), items
    size = (response.usage["width"], response.usage["height"])
    assert response.usage["image_count"] == n
    pngs = []
    for item in items:
        png, image = client.download(item["image"])
        assert image.size == size
        pngs.append(png)
    return size, pngs


def assert_error(response, status: int, code: str | set[str]) -> None:
    """An error as the SDK reports it: no exception, no output, a code, a message, a request id."""
    assert response.status_code == status, describe(response)
    codes = {code} if isinstance(code, str) else code
    assert response.code in codes, describe(response)
    assert response.code in SPEC_CODES[status]
    assert isinstance(response.message, str) and response.message.strip(), describe(response)
    assert response.request_id, describe(response)
    assert response.output is None


# --- success --------------------------------------------------------------------------------


@pytest.mark.parametrize("image", [SQUARE, URL_IMAGE], ids=["data-uri", "https-url"])
def test_n_images_of_the_requested_size_in_one_choice(client, image):
    response = client.edit(
        images=[image],
        text="Replace the background with a seaside sunset",
        n=2,
        size="768*512",
        seed=7,
        negative_prompt="blurry, low quality",
        prompt_extend=False,
        watermark=False,
    )
    size, pngs = images_of(client, response, n=2)
    assert size == (768, 512)
    assert pngs[0] != pngs[1]  # two pictures, not one twice


@pytest.mark.parametrize("model", ["qwen-image-2.0-pro", "qwen-image-2.0"])
@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ([SQUARE, LANDSCAPE], (640, 480)),
        ([URL_IMAGE, PORTRAIT], (480, 800)),
        ([LANDSCAPE, URL_IMAGE], (1024, 1024)),  # the last image is a link the mock does not fetch
    ],
    ids=["data-last", "url-then-data", "data-then-url"],
)
def test_2_0_series_default_size_is_the_last_input_image_size(client, model, images, expected):
    response = client.edit(model=model, images=images)  # no size: the SDK sends "parameters": {}
    size, _ = images_of(client, response, n=1)
    assert size == expected


@pytest.mark.parametrize("model", ["qwen-image-edit-plus", "qwen-image-edit-max"])
@pytest.mark.parametrize("last", [(640, 480), (480, 800)], ids=["4:3", "3:5"])
def test_edit_plus_max_default_size_is_about_a_megapixel_in_the_last_inputs_ratio(client, model, last):
    response = client.edit(model=model, images=[SQUARE, data_uri(png_bytes(*last))])
    (width, height), _ = images_of(client, response, n=1)
    assert abs(width * height - 1024 * 1024) <= 0.03 * 1024 * 1024, (width, height)
    ratio = last[0] / last[1]
    assert abs(width - height * ratio) <= 1 or abs(height - width / ratio) <= 1, (width, height)
    assert 512 <= width <= 2048 and 512 <= height <= 2048


def test_qwen_image_edit_makes_one_image(client):
    response = client.edit(model="qwen-image-edit", images=[LANDSCAPE], n=1)
    images_of(client, response, n=1)


@pytest.mark.parametrize("parameters", [{"n": 2}, {"size": "1024*1024"}], ids=["n=2", "size"])
def test_qwen_image_edit_refuses_n_over_1_and_any_size(client, parameters):
    response = client.edit(model="qwen-image-edit", images=[LANDSCAPE], **parameters)
    assert_error(response, 400, "InvalidParameter")


# --- per-model rules ------------------------------------------------------------------------

SIZE_CASES = [
    # 2.0 series: total pixels in [512², 2048²], no rule per side.
    *(
        (model, size, ok)
        for model in ("qwen-image-2.0-pro", "qwen-image-2.0")
        for size, ok in [
            ("512*512", True),
            ("511*512", False),
            ("2048*2048", True),
            ("2049*2048", False),
            ("1024*256", True),
        ]
    ),
    # edit-plus / edit-max: each side in [512, 2048].
    *(
        (model, size, ok)
        for model in ("qwen-image-edit-plus", "qwen-image-edit-max")
        for size, ok in [
            ("512*2048", True),
            ("511*1024", False),
            ("2048*2049", False),
            ("1024*256", False),
        ]
    ),
]


@pytest.mark.parametrize(("model", "size", "ok"), SIZE_CASES, ids=[f"{m}-{s}" for m, s, _ in SIZE_CASES])
def test_size_bounds_per_model(client, model, size, ok):
    response = client.edit(model=model, images=[SQUARE], size=size)
    if ok:
        got, _ = images_of(client, response, n=1)
        assert got == tuple(int(side) for side in size.split("*"))
    else:
        assert_error(response, 400, "InvalidParameter")
        assert "size" in response.message


@pytest.mark.parametrize("model", ["qwen-image-2.0-pro", "qwen-image-edit-plus"])
def test_n_up_to_6(client, model):
    response = client.edit(model=model, images=[SQUARE], n=6, size="512*512")
    _, pngs = images_of(client, response, n=6)
    assert len(set(pngs)) == 6


@pytest.mark.parametrize("model", ["qwen-image-2.0-pro", "qwen-image-edit-plus"])
@pytest.mark.parametrize("n", [0, 7])
def test_n_out_of_range_is_refused(client, model, n):
    response = client.edit(model=model, images=[SQUARE], n=n, size="512*512")
    assert_error(response, 400, "InvalidParameter")
    assert re.search(r"\bn\b", response.message), response.message  # names the field


@pytest.mark.parametrize(("seed", "ok"), [(0, True), (MAX_SEED, True), (-1, False), (MAX_SEED + 1, False)])
def test_seed_bounds(client, seed, ok):
    response = client.edit(images=[SQUARE], size="512*512", seed=seed)
    if ok:
        images_of(client, response, n=1)
    else:
        assert_error(response, 400, "InvalidParameter")
        assert "seed" in response.message


@pytest.mark.parametrize("length", [801, 3000])
def test_text_over_800_characters_is_accepted(client, length):
    # Upstream truncates past 800 characters; it does not refuse.
    response = client.edit(images=[SQUARE], text="x" * length, size="512*512")
    images_of(client, response, n=1)


def test_three_images_are_accepted(client):
    response = client.edit(images=[SQUARE, URL_IMAGE, LANDSCAPE], size="512*512")
    images_of(client, response, n=1)


@pytest.mark.parametrize(
    "content",
    [
        [{"text": "Make it snow"}],
        [{"image": SQUARE}] * 4 + [{"text": "Make it snow"}],
        [{"image": SQUARE}, {"text": "Make it snow"}, {"text": "and night"}],
        [{"image": SQUARE}],
    ],
    ids=["no-image", "four-images", "two-texts", "no-text"],
)
def test_content_needs_1_to_3_images_and_one_text(client, content):
    response = client.edit(content=content, size="512*512")
    assert_error(response, 400, "InvalidParameter")


def test_oss_references_are_accepted_and_not_fetched(client):
    response = client.edit(images=[OSS_IMAGE], size="512*512")
    images_of(client, response, n=1)
    [entry] = client.journal()
    assert entry["status"] == 200
    assert entry["body"]["input"]["messages"][0]["content"][0] == {"image": OSS_IMAGE}
    # The SDK marks a request carrying oss:// references.
    assert entry["headers"]["x-dashscope-ossresourceresolve"] == "enable"


# --- errors as the SDK reports them ---------------------------------------------------------


def test_a_bad_parameter_is_400_invalid_parameter(client):
    response = client.edit(images=[SQUARE], n=7)
    assert_error(response, 400, "InvalidParameter")
    assert response.request_id == header(response, "x-request-id")


def test_an_unknown_model_is_400_invalid_parameter(client):
    response = client.edit(model="qwen-image-3.0-ultra", images=[SQUARE])
    assert_error(response, 400, "InvalidParameter")
    assert "model" in response.message.lower()


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("rate_limit", 429, "Throttling.RateQuota"),
        ("moderation", 400, "DataInspectionFailed"),
        ("server_error", 500, "InternalError"),
    ],
)
def test_scenario_faults_reach_the_sdk(client, fault, status, code):
    client.add_scenario(fault=fault, times=1)
    failed = client.edit(images=[SQUARE], size="512*512")
    assert_error(failed, status, code)
    # The SDK does not retry an HTTP error; the scenario is used up, so the same call now works.
    images_of(client, client.edit(images=[SQUARE], size="512*512"), n=1)
    assert [entry["status"] for entry in client.journal()] == [status, 200]


@pytest.mark.parametrize(
    "how",
    [{"headers": {"X-DashScope-Async": "enable"}}, {"async_request": True}],
    ids=["header", "async_request"],
)
def test_asynchronous_calls_are_refused(client, how):
    response = client.edit(images=[SQUARE], size="512*512", **how)
    assert_error(response, ASYNC_REFUSAL_STATUS, ASYNC_REFUSAL_CODES)
    assert re.search(r"async|synchronous", response.message, re.IGNORECASE), response.message
    [entry] = client.journal()
    assert entry["headers"]["x-dashscope-async"] == "enable"  # what the SDK sent


def test_configured_keys(start_server, monkeypatch):
    keyed = start_server({"QWEN_MOCK_API_KEYS": KEY})
    point_sdk_at(monkeypatch, keyed.base_url)
    client = Client(keyed.base_url)

    refused = client.edit(images=[SQUARE], size="512*512", api_key="sk-wrong")
    assert_error(refused, 401, "InvalidApiKey")

    images_of(client, client.edit(images=[SQUARE], size="512*512", api_key=KEY), n=1)


# --- determinism and the journal ------------------------------------------------------------


def test_the_same_request_gives_the_same_images(client):
    def pngs(seed: int) -> list[bytes]:
        response = client.edit(images=[LANDSCAPE], text="Make it snow", n=2, size="512*512", seed=seed)
        return images_of(client, response, n=2)[1]

    first, again, other_seed = pngs(11), pngs(11), pngs(12)
    assert first == again
    assert first[0] != first[1]
    assert not set(first) & set(other_seed)


def test_the_journal_shows_the_call_as_dashscope(client):
    response = client.edit(images=[LANDSCAPE], text="Make it snow", n=1, size="512*512", seed=5)
    images_of(client, response, n=1)

    [entry] = client.journal()
    assert entry["provider"] == "dashscope"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", PATH, 200)
    assert entry["request_id"] == response.request_id
    body = entry["body"]
    assert body["model"] == "qwen-image-2.0-pro"
    assert body["parameters"] == {"n": 1, "size": "512*512", "seed": 5}
    image, text = body["input"]["messages"][0]["content"]
    assert image["image"] == {"media_type": "image/png", "bytes": len(LANDSCAPE_PNG),
                              "sha256": hashlib.sha256(LANDSCAPE_PNG).hexdigest()}
    assert text == {"text": "Make it snow"}
    assert KEY not in entry["headers"]["authorization"]
    assert entry["headers"]["user-agent"].startswith(f"dashscope/{dashscope.__version__};")


def test_nothing_but_loopback_is_reachable():
    """The guard above works: were the SDK pointed elsewhere, the call would fail here."""
    with pytest.raises(NetworkLeak):
        socket.getaddrinfo("dashscope.aliyuncs.com", 443)
    with socket.socket() as sock, pytest.raises(NetworkLeak):
        sock.connect(("10.255.255.1", 443))
    assert os.environ["NO_PROXY"] == LOOPBACK

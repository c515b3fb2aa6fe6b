"""Real clients against a real server: the OpenAI Python SDK against modelverse (and, through
``client.post``, powertokens), and httpx against powertokens."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
from conftest import AUTH
from imaging import data_uri, image_bytes, open_png

ROOT = Path(__file__).resolve().parent.parent
MODEL = "Qwen/Qwen-Image-Edit"
IMAGE = data_uri(image_bytes(64, 48))


def schema(provider: str, name: str) -> dict:
    return json.loads((ROOT / "schemas" / provider / f"{name}.json").read_text())


@pytest.fixture
def sdk(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.base_url + "/v1", api_key="k", max_retries=0)


def download_png(url: str):
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return open_png(response.content)


# --- OpenAI SDK, modelverse ----------------------------------------------------------------


def test_sdk_generate_returns_a_downloadable_url(sdk, live_server):
    response = sdk.images.generate(
        model=MODEL, prompt="Convert to quick pencil sketch", extra_body={"image": IMAGE, "negative_prompt": "blurry"}
    )
    assert len(response.data) == 1
    url = response.data[0].url
    assert url and url.startswith(live_server.base_url + "/files/")
    assert response.data[0].b64_json is None
    assert download_png(url).size == (64, 48)
    assert isinstance(response.created, int) and response.created > 0


def test_sdk_n_and_extra_body_parameters(sdk):
    response = sdk.images.generate(
        model=MODEL,
        prompt="Convert to quick pencil sketch",
        n=3,
        extra_body={"image": data_uri(image_bytes(400, 300)), "strength": 0.5, "steps": 50, "guidance_scale": 10, "seed": 3},
    )
    assert len(response.data) == 3
    images = [download_png(item.url) for item in response.data]
    assert [image.size for image in images] == [(400, 300)] * 3
    # Three different pictures, not just three different files.
    assert len({image.convert("RGB").tobytes() for image in images}) == 3


@pytest.mark.parametrize("how", ["argument", "extra_body"])
def test_sdk_b64_json(sdk, how):
    extra = {"image": IMAGE}
    kwargs = {}
    if how == "argument":
        kwargs["response_format"] = "b64_json"
    else:
        extra["response_format"] = "b64_json"
    response = sdk.images.generate(model=MODEL, prompt="Convert to quick pencil sketch", extra_body=extra, **kwargs)
    value = response.data[0].b64_json
    assert value is not None and response.data[0].url is None
    assert value.startswith("data:image/png;base64,")  # as the modelverse document shows
    png = base64.b64decode(value.removeprefix("data:image/png;base64,"), validate=True)
    assert open_png(png).size == (64, 48)


def test_sdk_request_id_is_the_x_request_id_header(sdk):
    raw = sdk.images.with_raw_response.generate(model=MODEL, prompt="a sketch", extra_body={"image": IMAGE})
    header = raw.headers["x-request-id"]
    assert header
    assert raw.parse()._request_id == header
    plain = sdk.images.generate(model=MODEL, prompt="a sketch", extra_body={"image": IMAGE})
    assert plain._request_id and plain._request_id != header


def _assert_sdk_error(exc: openai.APIStatusError, status: int, code: str) -> None:
    assert exc.status_code == status
    assert exc.code == code
    header = exc.response.headers["x-request-id"]
    assert exc.request_id == header
    # The modelverse envelope carries the request id in ``param``.
    assert exc.param == header
    assert isinstance(exc.body, dict)
    jsonschema.validate({"error": exc.body}, schema("modelverse", "error"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 5), ("n", 0), ("steps", 51), ("steps", 0), ("strength", 1.5), ("guidance_scale", 0.5), ("seed", -2)],
)
def test_sdk_out_of_range_value_raises_bad_request(sdk, field, value):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model=MODEL, prompt="a sketch", extra_body={"image": IMAGE, field: value})
    _assert_sdk_error(caught.value, 400, "param_error")
    assert caught.value.body["message"].startswith(field), caught.value.body
    assert caught.value.body["type"] == "invalid_request_error"


def test_sdk_missing_image_raises_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model=MODEL, prompt="a sketch")
    _assert_sdk_error(caught.value, 400, "param_error")
    assert "image" in caught.value.body["message"]


def test_sdk_bad_image_raises_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model=MODEL, prompt="a sketch", extra_body={"image": data_uri(b"not an image")})
    _assert_sdk_error(caught.value, 400, "param_error")
    assert "image" in caught.value.body["message"]


@pytest.mark.parametrize("model", ["dall-e-3", "qwen-image-2.0-pro", "Qwen/Qwen-Image-Edit-2509", ""])
def test_sdk_unknown_model_raises_model_error(sdk, model):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model=model, prompt="a sketch", extra_body={"image": IMAGE})
    _assert_sdk_error(caught.value, 400, "model_error")
    assert "model" in caught.value.body["message"]


def test_sdk_authentication_against_configured_keys(start_server, powertokens_request):
    server = start_server({"QWEN_MOCK_API_KEYS": "good,also-good"})
    base = server.base_url + "/v1"
    for key in ("good", "also-good"):
        ok = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
        assert ok.images.generate(model=MODEL, prompt="a sketch", extra_body={"image": IMAGE}).data[0].url

    for key in ("bad", "goo", "goodgood", "good,also-good", "GOOD"):
        bad = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.images.generate(model=MODEL, prompt="a sketch", extra_body={"image": IMAGE})
        _assert_sdk_error(caught.value, 401, "auth_error")
        # powertokens through the SDK's generic post: its own envelope and code.
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.post("/images/edits", body=powertokens_request, cast_to=object)
        assert caught.value.code == "InvalidApiKey"
        assert caught.value.request_id == caught.value.response.headers["x-request-id"]

    # Authentication comes before anything else: a bad key with a bad body is still 401.
    response = httpx.post(f"{server.base_url}/v1/images/generations", content=b"{", headers={"Authorization": "Bearer bad"})
    assert response.status_code == 401
    response = httpx.post(f"{server.base_url}/v1/images/edits", json={}, headers={"Authorization": "Bearer good"})
    assert response.status_code == 400


# --- OpenAI SDK, powertokens (generic post: the SDK's images.edit sends multipart) ---------


def test_sdk_post_to_powertokens(sdk, powertokens_request):
    result = sdk.post("/images/edits", body=powertokens_request, cast_to=object)
    assert isinstance(result, dict)
    assert len(result["data"]) == 2
    assert [download_png(item["url"]).size for item in result["data"]] == [(1536, 1024)] * 2

    powertokens_request["n"] = 7
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.post("/images/edits", body=powertokens_request, cast_to=object)
    assert caught.value.code == "InvalidParameter"
    assert caught.value.param == "n"  # powertokens names the field in ``param``
    assert caught.value.request_id == caught.value.response.headers["x-request-id"]


# --- httpx, powertokens -------------------------------------------------------------------


def post_powertokens(live_server, body: dict) -> httpx.Response:
    return httpx.post(f"{live_server.base_url}/v1/images/edits", json=body, headers=AUTH, timeout=30)


def test_httpx_powertokens_seed_example(live_server, powertokens_request):
    response = post_powertokens(live_server, powertokens_request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    jsonschema.validate(body, schema("powertokens", "response"))
    assert isinstance(body["created"], int)
    metadata = body["metadata"]
    assert metadata["parameters"] == {
        "n": 2,
        "size": "1536*1024",
        "watermark": False,
        "prompt_extend": True,
        "negative_prompt": "low quality",
        "seed": 0,
    }
    if "request_id" in metadata:
        assert metadata["request_id"] == response.headers["x-request-id"]
    assert len(body["data"]) == 2
    for item in body["data"]:
        assert set(item) == {"url", "revised_prompt"}
        assert "seaside sunset" in item["revised_prompt"]
        assert download_png(item["url"]).size == (1536, 1024)


@pytest.mark.parametrize(("size", "normalised"), [("1536x1024", "1536*1024"), ("1024x1536", "1024*1536"), ("512*512", "512*512")])
def test_httpx_powertokens_size_is_normalised(live_server, powertokens_request, size, normalised):
    powertokens_request.update(size=size, n=1)
    response = post_powertokens(live_server, powertokens_request)
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["parameters"]["size"] == normalised
    width, height = map(int, normalised.split("*"))
    assert download_png(response.json()["data"][0]["url"]).size == (width, height)


def test_httpx_powertokens_mapping_shows_only_what_was_sent(live_server, powertokens_request):
    body = copy.deepcopy(powertokens_request)
    for key in ("seed", "negative_prompt"):
        del body[key]
    body.update(prompt_extend=False, watermark=True, n=1)
    response = post_powertokens(live_server, body)
    assert response.status_code == 200, response.text
    parameters = response.json()["metadata"]["parameters"]
    assert "seed" not in parameters  # an absent seed is not invented
    assert "negative_prompt" not in parameters
    assert parameters["prompt_extend"] is False and parameters["watermark"] is True
    # prompt_extend off: no revised prompt.
    assert all("revised_prompt" not in item for item in response.json()["data"])


def test_httpx_powertokens_b64_json(live_server, powertokens_request):
    powertokens_request.update(response_format="b64_json", size="512x512")
    response = post_powertokens(live_server, powertokens_request)
    assert response.status_code == 200, response.text
    body = response.json()
    jsonschema.validate(body, schema("powertokens", "response"))
    for item in body["data"]:
        assert "url" not in item
        assert open_png(base64.b64decode(item["b64_json"], validate=True)).size == (512, 512)


def test_httpx_powertokens_error_names_the_field(live_server, powertokens_request):
    powertokens_request["size"] = "4096*4096"
    response = post_powertokens(live_server, powertokens_request)
    assert response.status_code == 400
    error = response.json()
    jsonschema.validate(error, schema("powertokens", "error"))
    assert error["error"]["param"] == "size"
    assert error["error"]["code"] == "InvalidParameter"
    assert response.headers["x-request-id"]


# --- GET /v1/models: the listing modelverse documents --------------------------------------


def test_sdk_lists_the_documented_models(sdk):
    models = sdk.models.list()
    assert [model.id for model in models] == ["Qwen/Qwen-Image-Edit"]
    assert all(model.owned_by == "modelverse" for model in models)


def test_model_listing_needs_a_key_like_the_edit_endpoint(start_server):
    server = start_server({"QWEN_MOCK_API_KEYS": "right"})
    wrong = openai.OpenAI(base_url=server.base_url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.models.list()
    assert caught.value.body["code"] == "auth_error"
    right = openai.OpenAI(base_url=server.base_url + "/v1", api_key="right", max_retries=0)
    assert [model.id for model in right.models.list()] == ["Qwen/Qwen-Image-Edit"]

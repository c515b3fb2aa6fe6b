"""Record real exchanges once, replay them forever, check them offline.

No real provider is reachable here, so a mock on 127.0.0.1 with keys plays the provider: the
recording proxy (``qwen-image-mock record``) in front of it, clients driving it the way users
do (httpx, the OpenAI SDK, the dashscope SDK), then a mock with another link secret replaying
the cassette once the upstream is gone."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import dashscope
import httpx
import openai
import pytest
from cassette_support import (
    KEY,
    Recorder,
    exchanges,
    files_under,
    powertokens_body,
    sha,
)
from conftest import LiveServer

from mockserver.testing import sample_data_uri

FROZEN = 1_790_000_000
MODELVERSE = {"model": "Qwen/Qwen-Image-Edit", "prompt": "Convert to a pencil sketch"}


def _without(headers: httpx.Headers, *names: str) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in headers.multi_items() if k not in names)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One recording session against a keyed mock with a frozen clock (so that its answers
    repeat exactly): what the clients saw through the proxy, what the upstream gives the same
    requests sent straight to it, and the images its links served."""
    folder = tmp_path_factory.mktemp("recorded")
    cassette = folder / "cassette"
    upstream = LiveServer({"QWEN_MOCK_API_KEYS": KEY, "QWEN_MOCK_FROZEN_TIME": str(FROZEN)})
    proxy = Recorder(upstream.base_url, cassette, folder / "record.log")
    auth = {"Authorization": f"Bearer {KEY}"}
    seen: dict[str, object] = {"through": [], "direct": [], "images": {}}
    try:
        def both(path: str, body: dict, headers: dict[str, str], name: str) -> httpx.Response:
            """The same request through the proxy and straight to the upstream (same x-request-id)."""
            headers = {**headers, "x-request-id": f"req-{name}"}
            through = httpx.post(proxy.base_url + path, json=body, headers=headers, timeout=60)
            direct = httpx.post(upstream.base_url + path, json=body, headers=headers, timeout=60)
            seen["through"].append(through)
            seen["direct"].append(direct)
            return through

        # powertokens with httpx: a rate limit then the answer, for the same body
        pt = powertokens_body(n=2)
        both("/v1/images/edits", pt, {**auth, "Prefer": "code=429, retry-after-ms=20"}, "pt-429")
        answer = both("/v1/images/edits", pt, auth, "pt-200")
        for item in answer.json()["data"]:
            seen["images"][item["url"]] = sha(httpx.get(item["url"]).content)
        # two requests sharing a prompt, differing in the seed: two exchanges
        both("/v1/images/edits", powertokens_body(seed=2, response_format="b64_json"), auth, "pt-seed2")
        # a refused key: recorded as a 401, the key nowhere (a cassette cannot tell keys apart,
        # so the same body with a right key would be the same request: another body here)
        both("/v1/images/edits", powertokens_body(n=1), {"Authorization": "Bearer sk-wrong-key-not-recorded-42"},
             "pt-401")
        # modelverse with the OpenAI SDK
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0)
        generated = client.images.generate(**MODELVERSE, extra_body={"image": sample_data_uri("input-512.png"),
                                                                      "seed": 7})
        seen["modelverse_url"] = generated.data[0].url
        seen["images"][generated.data[0].url] = sha(httpx.get(generated.data[0].url).content)
        # dashscope with its SDK, and an asynchronous call (the header changes the answer)
        dashscope.base_http_api_url = proxy.base_url + "/api/v1"
        message = [{"role": "user", "content": [{"image": sample_data_uri("input-512.png")}, {"text": "snow"}]}]
        done = dashscope.MultiModalConversation.call(api_key=KEY, model="qwen-image-2.0", messages=message, n=1,
                                                      size="512*512")
        seen["dashscope"] = (done.status_code, done.output.choices[0].message.content[0]["image"])
        seen["images"][seen["dashscope"][1]] = sha(httpx.get(seen["dashscope"][1]).content)
        refused = httpx.post(proxy.base_url + "/api/v1/services/aigc/multimodal-generation/generation",
                             headers={**auth, "X-DashScope-Async": "enable"},
                             json={"model": "qwen-image-2.0", "input": {"messages": message}, "parameters": {}})
        seen["async"] = refused.status_code
    finally:
        seen["log"] = proxy.stop()
        upstream.stop()
    seen["cassette"] = cassette
    return seen


def test_the_client_saw_exactly_the_upstreams_answers(recorded):
    for through, direct in zip(recorded["through"], recorded["direct"]):
        assert through.status_code == direct.status_code
        assert through.content == direct.content
        assert _without(through.headers, "date") == _without(direct.headers, "date")
    assert [r.status_code for r in recorded["through"]] == [429, 200, 200, 401]
    assert recorded["dashscope"][0] == 200 and recorded["async"] == 403


def test_the_cassette_holds_every_call_and_no_key_anywhere(recorded):
    cassette: Path = recorded["cassette"]
    names = sorted(path.name for path in (cassette / "exchanges").iterdir())
    assert [name.split("-", 1)[1] for name in names] == [
        "powertokens-429.json", "powertokens-200.json", "powertokens-200.json", "powertokens-401.json",
        "modelverse-200.json", "dashscope-200.json", "dashscope-403.json"]
    for path in files_under(cassette):
        data = path.read_bytes()
        assert KEY.encode() not in data and b"sk-wrong-key-not-recorded-42" not in data, path
        assert b"Bearer" not in data or path.suffix != ".json", path
    assert KEY not in recorded["log"] and "sk-wrong-key" not in recorded["log"]
    assert "recorded exchanges/0001-powertokens-429.json" in recorded["log"]
    first, second, seed2, refused, _, _, asynchronous = exchanges(cassette)
    assert first["response"]["headers"]["retry-after-ms"] == "20"
    assert first["request"]["credentials"] == "bearer" and refused["request"]["credentials"] == "bearer"
    assert first["request"]["body"] == second["request"]["body"] != seed2["request"]["body"]
    assert asynchronous["request"]["headers"] == {"x-dashscope-async": "enable"}
    image = first["request"]["body"]["input"]["messages"][0]["content"][0]["image"]
    assert image == {"$image": sha(base64.b64decode(sample_data_uri("input-512.png").split(",")[1])),
                     "prefix": "data:image/png;base64,"}
    assert (cassette / "images" / f"{image['$image']}.png").is_file()
    # every image once: the input image sent five times is one file
    digests = [path.stem for path in (cassette / "images").iterdir()]
    assert len(digests) == len(set(digests))
    # pretty-printed, keys sorted: a person can read and edit it
    text = (cassette / "exchanges" / names[1]).read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.fixture(scope="module")
def replaying(recorded, tmp_path_factory):
    """The cassette replayed by a mock with another link secret, the upstream gone."""
    server = LiveServer({"QWEN_MOCK_REPLAY": str(recorded["cassette"]), "QWEN_MOCK_URL_SECRET": "another-secret",
                         "QWEN_MOCK_FROZEN_TIME": str(FROZEN + 60)})
    yield server
    server.stop()


def test_replay_gives_the_recorded_statuses_bodies_and_images(recorded, replaying):
    httpx.delete(replaying.base_url + "/__mock/replay").raise_for_status()
    auth = {"Authorization": "Bearer any-key-will-do"}
    pt = powertokens_body(n=2)
    answers = [httpx.post(replaying.base_url + "/v1/images/edits", json=pt, headers=auth) for _ in range(3)]
    # recorded order: the 429, then the answer; the last one repeats
    assert [a.status_code for a in answers] == [429, 200, 200]
    assert [a.headers["x-mock-replay"] for a in answers] == ["hit"] * 3
    assert answers[0].headers["retry-after-ms"] == "20"
    recorded_429, recorded_200 = recorded["through"][0], recorded["through"][1]
    assert answers[0].json() == recorded_429.json()  # an error as recorded
    got, want = answers[1].json(), recorded_200.json()
    assert len(got["data"]) == len(want["data"]) == 2
    for mine, theirs in zip(got["data"], want["data"]):
        assert mine["url"].startswith(replaying.base_url + "/files/replay/")
        assert mine["revised_prompt"] == theirs["revised_prompt"]
        image = httpx.get(mine["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert sha(image.content) == recorded["images"][theirs["url"]]
    # what replay makes its own: links, created (the mock's clock), the request id echoed
    assert {k: v for k, v in got.items() if k != "data"} == {
        **{k: v for k, v in want.items() if k != "data"}, "created": FROZEN + 60,
        "metadata": {**want["metadata"], "request_id": answers[1].headers["x-request-id"]}}
    # b64_json as recorded, and the other seed is another exchange
    seed2 = httpx.post(replaying.base_url + "/v1/images/edits", headers=auth,
                       json=powertokens_body(seed=2, response_format="b64_json"))
    assert seed2.headers["x-mock-replay"] == "hit"
    assert [item["b64_json"] for item in seed2.json()["data"]] == [
        item["b64_json"] for item in recorded["through"][2].json()["data"]]


def test_replay_through_the_sdks(recorded, replaying):
    client = openai.OpenAI(base_url=replaying.base_url + "/v1", api_key="k", max_retries=0)
    generated = client.images.generate(**MODELVERSE, extra_body={"image": sample_data_uri("input-512.png"),
                                                                  "seed": 7})
    assert sha(httpx.get(generated.data[0].url).content) == recorded["images"][recorded["modelverse_url"]]
    dashscope.base_http_api_url = replaying.base_url + "/api/v1"
    message = [{"role": "user", "content": [{"image": sample_data_uri("input-512.png")}, {"text": "snow"}]}]
    done = dashscope.MultiModalConversation.call(api_key="k", model="qwen-image-2.0", messages=message, n=1,
                                                  size="512*512")
    assert done.status_code == 200
    link = done.output.choices[0].message.content[0]["image"]
    assert sha(httpx.get(link).content) == recorded["images"][recorded["dashscope"][1]]
    # a miss is the mock's own answer, generated, and says so
    other = client.images.with_raw_response.generate(**MODELVERSE, extra_body={
        "image": sample_data_uri("input-512.png"), "seed": 8})
    assert other.headers["x-mock-replay"] == "miss"


def test_a_strict_miss_names_the_nearest_request_and_what_differs(recorded):
    server = LiveServer({"QWEN_MOCK_REPLAY": str(recorded["cassette"]), "QWEN_MOCK_REPLAY_STRICT": "1"})
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.NotFoundError) as raised:
            client.images.generate(**{**MODELVERSE, "prompt": "Convert to ink"},
                                   extra_body={"image": sample_data_uri("input-512.png"), "seed": 7})
        message = raised.value.body["message"]
        assert "The nearest is exchanges/0005-modelverse-200.json" in message
        assert 'body.prompt (recorded "Convert to a pencil sketch", sent "Convert to ink")' in message
        assert raised.value.response.headers["x-mock-replay"] == "miss"
        assert raised.value.response.headers["x-mock-replay-nearest"] == "0005-modelverse-200.json"
        # the error is the provider's own envelope, dashscope's too
        dashscope.base_http_api_url = server.base_url + "/api/v1"
        message = [{"role": "user", "content": [{"image": sample_data_uri("input-512.png")}, {"text": "rain"}]}]
        missed = dashscope.MultiModalConversation.call(api_key="k", model="qwen-image-2.0", messages=message, n=1,
                                                        size="512*512")
        assert (missed.status_code, missed.code) == (404, "NotFound")
        assert "body.input.messages[0].content[1].text" in missed.message
        # a hit is still a hit
        hit = httpx.post(server.base_url + "/v1/images/edits", json=powertokens_body(n=2),
                         headers={"Authorization": "Bearer k"})
        assert (hit.status_code, hit.headers["x-mock-replay"]) == (429, "hit")
        # the credentials' form counts: no key is another request
        keyless = httpx.post(server.base_url + "/v1/images/edits", json=powertokens_body(n=2))
        assert keyless.status_code == 404
        assert 'credentials (recorded "bearer", sent "none")' in keyless.json()["error"]["message"]
    finally:
        server.stop()

"""The pytest plugin, used the way a user would: test files run by ``pytester``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

IMAGES = Path(__file__).resolve().parent.parent / "fixtures" / "images"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project: their code under test and an input image of their own."""
    pytester.makepyfile(photo_app='''
        import base64
        import httpx
        from openai import OpenAI

        def sketch(base_url, api_key, image_path, max_retries=2):
            """Modelverse through the OpenAI SDK, with its built-in retries."""
            client = OpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries)
            with open(image_path, "rb") as f:
                image = "data:image/png;base64," + base64.b64encode(f.read()).decode()
            response = client.images.generate(model="Qwen/Qwen-Image-Edit", prompt="Convert to a pencil sketch",
                                              extra_body={"image": image, "seed": 7})
            return response.data[0].url

        def snow(base_url, api_key, image_path):
            """powertokens, with plain httpx."""
            with open(image_path, "rb") as f:
                image = "data:image/png;base64," + base64.b64encode(f.read()).decode()
            body = {"model": "qwen-image-2.0-pro", "size": "1024*1024",
                    "input": {"messages": [{"role": "user", "content": [{"image": image}, {"text": "Make it snow"}]}]}}
            response = httpx.post(f"{base_url}/v1/images/edits", json=body,
                                  headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
            response.raise_for_status()
            return response.json()["data"][0]["url"]
    ''')
    # anyio runs async tests on every backend installed (trio too, where it is): one here, so
    # that the counts below do not depend on what else is installed.
    pytester.makeconftest('''
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
    ''')
    shutil.copy(IMAGES / "input-512.png", pytester.path / "cat.png")
    return pytester


def test_the_plugin_is_registered_by_installing_the_package(project):
    """In a fresh interpreter: the entry point alone brings the fixtures; the SDK's retries
    go through two rate limits, and the journal saw all three calls."""
    project.makepyfile(test_retries='''
        import httpx
        from photo_app import sketch

        def test_sdk_retries_through_rate_limits(qwen_mock):
            qwen_mock.fail_next(2, "rate_limit", retry_after_ms=10)

            url = sketch(qwen_mock.openai_base_url, qwen_mock.api_key, "cat.png")

            assert httpx.get(url).status_code == 200
            calls = qwen_mock.requests(provider="modelverse")
            assert [call["status"] for call in calls] == [429, 429, 200]

        def test_without_retries_the_error_reaches_the_caller(qwen_mock):
            import openai, pytest
            qwen_mock.fail_next(1, "rate_limit")
            with pytest.raises(openai.RateLimitError):
                sketch(qwen_mock.openai_base_url, qwen_mock.api_key, "cat.png", max_retries=0)
            assert len(qwen_mock.requests()) == 1
    ''')
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_asserting_what_the_client_sent(project):
    project.makepyfile(test_sent='''
        import hashlib, io
        import httpx
        from PIL import Image
        from photo_app import snow

        def test_snow_sends_the_photo_and_the_prompt(qwen_mock):
            url = snow(qwen_mock.base_url, qwen_mock.api_key, "cat.png")

            [call] = qwen_mock.requests(provider="powertokens")
            content = call["body"]["input"]["messages"][0]["content"]
            photo = open("cat.png", "rb").read()
            assert content[0]["image"] == {"media_type": "image/png", "bytes": len(photo),
                                           "sha256": hashlib.sha256(photo).hexdigest()}
            assert content[1] == {"text": "Make it snow"}
            assert call["body"]["size"] == "1024*1024"
            assert qwen_mock.api_key not in str(call)  # the key is redacted

            # The result is a real PNG of the requested size.
            image = Image.open(io.BytesIO(httpx.get(url).content))
            assert (image.format, image.size) == ("PNG", (1024, 1024))
    ''')
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_each_test_sees_only_its_own_calls_and_scenarios(project):
    project.makepyfile(test_isolation='''
        import httpx

        BODY = {"model": "Qwen/Qwen-Image-Edit", "prompt": "x", "image": "https://example.com/a.png"}

        def call(mock):
            return httpx.post(mock.openai_base_url + "/images/generations", json=BODY, headers=mock.headers)

        def test_first(qwen_mock):
            qwen_mock.fail_every(1, "server_error")
            assert call(qwen_mock).status_code == 500
            assert call(qwen_mock).status_code == 500

        def test_second(qwen_mock):
            assert call(qwen_mock).status_code == 200
            [entry] = qwen_mock.requests()
            assert entry["session"] == qwen_mock.session

        def test_prefer_helper(qwen_mock):
            response = httpx.post(qwen_mock.openai_base_url + "/images/generations", json=BODY,
                                  headers={**qwen_mock.headers, **qwen_mock.prefer(fault="rate_limit", retry_after_ms=20)})
            assert response.status_code == 429
            assert response.headers["retry-after-ms"] == "20"

        def test_urls(qwen_mock, qwen_mock_server):
            assert qwen_mock.base_url == f"http://127.0.0.1:{qwen_mock_server.port}"
            assert qwen_mock.openai_base_url == qwen_mock.base_url + "/v1"

        def test_a_bad_scenario_fails_the_test_clearly(qwen_mock):
            import pytest
            with pytest.raises(AssertionError, match="not a fault the mock knows"):
                qwen_mock.fail_next(1, "explode")
    ''')
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=5)


def test_in_process_client(project):
    project.makepyfile(test_fast='''
        import pytest
        from mockserver.controls.network import SimulatedNetworkFault

        BODY = {"model": "Qwen/Qwen-Image-Edit", "prompt": "x", "image": "https://example.com/a.png"}

        @pytest.mark.anyio
        async def test_in_process(qwen_mock_client, qwen_mock_inprocess):
            assert qwen_mock_inprocess.client is qwen_mock_client
            qwen_mock_inprocess.fail_next(1, "server_error")
            first = await qwen_mock_client.post("/v1/images/generations", json=BODY)
            second = await qwen_mock_client.post("/v1/images/generations", json=BODY)
            assert (first.status_code, second.status_code) == (500, 200)
            assert [c["status"] for c in qwen_mock_inprocess.requests()] == [500, 200]
            link = await qwen_mock_client.get(second.json()["data"][0]["url"])
            assert link.headers["content-type"] == "image/png"

        @pytest.mark.anyio
        async def test_network_faults_raise(qwen_mock_client):
            with pytest.raises(SimulatedNetworkFault):
                await qwen_mock_client.post("/v1/images/generations", json=BODY, headers={"Prefer": "fault=reset"})

        @pytest.mark.anyio
        async def test_a_fresh_mock_per_test(qwen_mock_inprocess):
            assert qwen_mock_inprocess.requests() == []
            with pytest.raises(ValueError, match="invalid scenario"):
                qwen_mock_inprocess.fail_next(0)
    ''')
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_config_file_from_the_ini(project):
    project.makeini("""
        [pytest]
        qwen_mock_config = mock.toml
    """)
    (project.path / "mock.toml").write_text('api_keys = ["sk-from-config"]\nstrict = true\n')
    project.makepyfile(test_configured='''
        import httpx
        import pytest

        BODY = {"model": "Qwen/Qwen-Image-Edit", "prompt": "x", "image": "https://example.com/a.png"}

        def test_live(qwen_mock):
            assert qwen_mock.api_key == "sk-from-config"
            url = qwen_mock.openai_base_url + "/images/generations"
            assert httpx.post(url, json=BODY, headers=qwen_mock.headers).status_code == 200
            assert httpx.post(url, json=BODY, headers={"Authorization": "Bearer other"}).status_code == 401
            strict = httpx.post(url, json={**BODY, "colour": "red"}, headers=qwen_mock.headers)
            assert strict.status_code == 400

        @pytest.mark.anyio
        async def test_in_process(qwen_mock_client):
            response = await qwen_mock_client.post("/v1/images/generations", json={**BODY, "colour": "red"})
            assert response.status_code == 400
    ''')
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_fixtures_are_documented(pytester):
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    # pytest lists a plugin's fixtures in the order of their "file:line" as text: each is
    # looked for on its own
    for fixture in ("qwen_mock_server [[]session scope[]] -- *", "qwen_mock -- *", "qwen_mock_inprocess -- *",
                    "qwen_mock_client -- *", "qwen_mock_replay -- *"):
        result.stdout.fnmatch_lines(["*fixtures defined from mockserver.testing.pytest_plugin*", fixture])


README_EXAMPLE = '''
from openai import OpenAI

def test_retries_through_rate_limits(qwen_mock):
    qwen_mock.fail_next(2, "rate_limit", retry_after_ms=10)   # 429, 429, then success
    client = OpenAI(base_url=qwen_mock.openai_base_url, api_key="test")
    client.images.generate(model="Qwen/Qwen-Image-Edit", prompt="snow",
                           extra_body={"image": qwen_mock.image_data_uri()})
    assert [call["status"] for call in qwen_mock.requests()] == [429, 429, 200]
'''


def test_the_readme_example_runs_as_written(pytester):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert README_EXAMPLE.strip() in readme, "README's plugin example changed: update this test with it"
    pytester.makepyfile(test_readme=README_EXAMPLE)
    pytester.runpytest_subprocess("-q").assert_outcomes(passed=1)


def test_sample_images_are_real_images_of_their_stated_size():
    import base64
    import io

    from PIL import Image

    from mockserver.testing.harness import MockControls
    from mockserver.testing.samples import sample_names

    assert "input-512.png" in sample_names()
    uri = MockControls.image_data_uri()
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    image.load()
    assert image.size == (512, 512)
    with pytest.raises(ValueError, match="no sample image"):
        MockControls.image_data_uri("missing.png")


def test_the_dashscope_sdk_against_the_fixture(project):
    """Any provider's client library finds the mock through ``client_base_url``; scenarios
    reach it in that provider's envelope."""
    project.makepyfile(test_dashscope_app='''
        import dashscope
        from dashscope import MultiModalConversation

        def edit(qwen_mock):
            return MultiModalConversation.call(
                api_key=qwen_mock.api_key, model="qwen-image-2.0", n=1, size="512*512",
                headers={"X-Mock-Session": qwen_mock.session},
                messages=[{"role": "user", "content": [{"image": qwen_mock.image_data_uri()}, {"text": "snow"}]}])

        def test_rate_limited_then_fine(qwen_mock, monkeypatch):
            monkeypatch.setattr(dashscope, "base_http_api_url", qwen_mock.client_base_url("dashscope"))
            qwen_mock.fail_next(1, "rate_limit", provider="dashscope")
            limited = edit(qwen_mock)
            assert (limited.status_code, limited.code) == (429, "Throttling.RateQuota")
            done = edit(qwen_mock)
            assert done.status_code == 200 and len(done.output.choices[0].message.content) == 1
            assert [call["status"] for call in qwen_mock.requests(provider="dashscope")] == [429, 200]
    ''')
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)

"""``serve --replay``: with the test controls (faults, scenarios, latency, the journal, the
admin endpoints), keys, several workers, the links to recorded images, and the pytest
plugin's ``qwen_mock_replay``."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from cassette_support import KEY, calls, in_process_proxy, mock_app, powertokens_body, sha
from conftest import LiveServer
from starlette.testclient import TestClient

from mockserver import Settings, create_app
from mockserver.cassettes.replay import ReplayEndpoint

pytest_plugins = ("pytester",)
AUTH = {"Authorization": f"Bearer {KEY}"}
EDITS = "/v1/images/edits"
T0 = 1_800_000_000


@pytest.fixture(scope="module")
def cassette(tmp_path_factory):
    """429 then 200 for one body; a b64 answer for another; a 200 whose link died."""
    folder = tmp_path_factory.mktemp("replay") / "cassette"
    proxy = in_process_proxy(mock_app(), folder)
    answers = calls(proxy,
                    ("POST", EDITS, {"json": powertokens_body(), "headers": {**AUTH, "Prefer": "code=429"}}),
                    ("POST", EDITS, {"json": powertokens_body(), "headers": AUTH}),
                    ("POST", EDITS, {"json": powertokens_body(seed=9, response_format="b64_json"), "headers": AUTH}))
    assert [a.status_code for a in answers] == [429, 200, 200]
    # an exchange whose image could not be downloaded at the time
    path = folder / "exchanges" / "0002-powertokens-200.json"
    lost = json.loads(path.read_text())
    lost["request"]["body"]["seed"] = 99
    lost["response"]["body"]["data"][0]["url"] = {"$image": None, "link": "https://cdn.example/x.png",
                                                  "unavailable": "the link answered 403"}
    (folder / "exchanges" / "0004-powertokens-200.json").write_text(json.dumps(lost, indent=2))
    return folder


def client_for(cassette, **settings) -> TestClient:
    return TestClient(create_app(Settings.from_env({}, replay=str(cassette), **settings)), headers=AUTH)


def test_without_replay_the_edit_endpoints_are_untouched():
    app = create_app(Settings())
    assert app.state.replay is None
    with TestClient(app, headers=AUTH) as client:
        answer = client.post(EDITS, json=powertokens_body())
    assert answer.status_code == 200 and "x-mock-replay" not in answer.headers
    with TestClient(create_app(Settings())) as client:
        assert client.get("/__mock/replay").status_code == 404


def test_faults_scenarios_and_latency_come_first_and_spend_no_recorded_answer(cassette):
    with client_for(cassette) as client:
        fault = client.post(EDITS, json=powertokens_body(), headers={"Prefer": "code=500"})
        assert fault.status_code == 500 and fault.headers["x-mock-fault"] == "server_error"
        assert "x-mock-replay" not in fault.headers  # the fault's answer, not the cassette's
        client.post("/__mock/scenarios", json={"fault": "overloaded", "times": 1}).raise_for_status()
        assert client.post(EDITS, json=powertokens_body()).status_code == 503
        started = time.monotonic()
        first = client.post(EDITS, json=powertokens_body(), headers={"Prefer": "latency=200"})
        assert time.monotonic() - started >= 0.2
        assert (first.status_code, first.headers["x-mock-replay"]) == (429, "hit")  # still the first recorded
        second = client.post(EDITS, json=powertokens_body())
        assert (second.status_code, second.headers["x-mock-replay-exchange"]) == (200, "0002-powertokens-200.json")
        # slow_body and truncated deliver the replayed answer, badly
        assert client.post(EDITS, json=powertokens_body(), headers={"Prefer": "fault=slow_body, pause-ms=1"}
                           ).status_code == 200
        # the journal saw all of it, replayed answers included
        journal = client.get("/__mock/requests").json()["requests"]
        assert [entry["status"] for entry in journal] == [500, 503, 429, 200, 200]
        status = client.get("/__mock/replay").json()["replay"]
        assert (status["hits"], status["misses"], status["exchanges"]) == (3, 0, 4)
        # rewinding starts every sequence again
        client.delete("/__mock/replay").raise_for_status()
        assert client.post(EDITS, json=powertokens_body()).status_code == 429


def test_keys_the_mock_refuses_never_reach_the_cassette(cassette):
    with client_for(cassette, api_keys=frozenset({"sk-only"})) as client:
        refused = client.post(EDITS, json=powertokens_body())
        assert (refused.status_code, refused.headers["x-mock-replay"]) == (401, "miss")
        accepted = client.post(EDITS, json=powertokens_body(), headers={"Authorization": "Bearer sk-only"})
        assert (accepted.status_code, accepted.headers["x-mock-replay"]) == (429, "hit")


def test_a_miss_is_the_mocks_own_answer(cassette):
    with client_for(cassette) as client:
        generated = client.post(EDITS, json=powertokens_body(seed=12345))
        assert (generated.status_code, generated.headers["x-mock-replay"]) == (200, "miss")
        assert "/files/" in generated.json()["data"][0]["url"] and "/files/replay/" not in generated.text
        invalid = client.post(EDITS, content=b"not json")
        assert (invalid.status_code, invalid.headers["x-mock-replay"]) == (400, "miss")
        assert invalid.json()["error"]["code"] == "InvalidParameter"


def test_links_to_recorded_images_expire_and_cannot_be_forged(cassette):
    with client_for(cassette, frozen_time=T0) as client:
        client.post(EDITS, json=powertokens_body())
        url = client.post(EDITS, json=powertokens_body()).json()["data"][0]["url"]
        path = url.removeprefix("http://testserver")
        assert path.startswith("/files/replay/") and path.endswith(".png")
        image = client.get(path)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        lost = client.post(EDITS, json=powertokens_body(seed=99)).json()["data"][0]["url"]
        gone = client.get(lost.removeprefix("http://testserver"))
        assert gone.status_code == 404 and "could not be downloaded when the cassette was recorded" in gone.text
        payload, signature, extension = path.rsplit("/", 1)[1].split(".")
        forged = client.get(f"/files/replay/{payload}.{signature[::-1]}.{extension}")
        assert forged.status_code == 404 and "signature" in forged.text
        assert client.get(f"/files/replay/{payload}.{signature}.jpg").status_code == 404
        assert client.get("/files/replay/../../etc/passwd").status_code == 404
    # any mock with the cassette and the secret serves the link; after its lifetime (24 h), 403
    with client_for(cassette, frozen_time=T0 + 3600) as later:
        assert sha(later.get(path).content) == sha(image.content)
    with client_for(cassette, frozen_time=T0 + 2 * 86400) as much_later:
        expired = much_later.get(path)
        assert expired.status_code == 403 and expired.json()["error"]["code"] == "AccessDenied"
    with client_for(cassette, frozen_time=T0, url_secret="another") as other:
        assert other.get(path).status_code == 404


def test_replay_with_several_workers(cassette):
    server = LiveServer({"QWEN_MOCK_REPLAY": str(cassette), "QWEN_MOCK_WORKERS": "2"})
    try:
        with httpx.Client(base_url=server.base_url, headers=AUTH) as client:
            b64 = [client.post(EDITS, json=powertokens_body(seed=9, response_format="b64_json")) for _ in range(6)]
            assert {(a.status_code, a.headers["x-mock-replay"]) for a in b64} == {(200, "hit")}
            link = None
            for _ in range(8):  # each worker keeps its own sequence, like scenarios
                answer = client.post(EDITS, json=powertokens_body())
                if answer.status_code == 200:
                    link = answer.json()["data"][0]["url"]
            assert link is not None
        # links are stateless: whichever worker takes a fresh connection serves the same bytes
        served: dict[str, set[str]] = {}
        for _ in range(200):
            fetched = httpx.get(link)
            assert fetched.status_code == 200
            served.setdefault(fetched.headers["x-mock-worker"], set()).add(sha(fetched.content))
            if len(served) == 2:
                break
        assert len(served) == 2, f"only worker(s) {sorted(served)} answered 200 fresh connections"
        assert len(set().union(*served.values())) == 1
    finally:
        server.stop()


def test_the_replay_endpoint_sits_under_the_controls(cassette):
    app = create_app(Settings(replay=str(cassette)))
    assert app.state.replay is not None
    assert all(isinstance(endpoint, ReplayEndpoint) for endpoint in app.state.replay.endpoints({}).values())
    with TestClient(create_app(Settings(replay=str(cassette), disable_admin=True)), headers=AUTH) as client:
        assert client.get("/__mock/replay").status_code == 404  # no admin endpoints, replay still on
        assert client.post(EDITS, json=powertokens_body()).headers["x-mock-replay"] == "hit"
    with TestClient(create_app(Settings(replay=str(cassette), admin_token="t0ken"))) as client:
        assert client.get("/__mock/replay").status_code == 401
        assert client.get("/__mock/replay", headers={"X-Mock-Admin-Token": "t0ken"}).status_code == 200


def test_the_plugin_replays_a_cassette_in_a_test(pytester, cassette):
    pytester.makepyfile(test_replayed=f'''
        import httpx
        import pytest
        from mockserver.testing import sample_data_uri

        CASSETTE = {str(cassette)!r}
        BODY = {json.dumps(powertokens_body())}

        def edit(mock):
            return httpx.post(mock.base_url + "/v1/images/edits", json=BODY, headers=mock.headers)

        def test_first(qwen_mock_replay):
            mock = qwen_mock_replay(CASSETTE)
            assert [edit(mock).status_code for _ in range(3)] == [429, 200, 200]
            assert [call["status"] for call in mock.requests()] == [429, 200, 200]
            assert mock.replay()["hits"] == 3

        def test_second_starts_from_the_first_answer_again(qwen_mock_replay):
            mock = qwen_mock_replay(CASSETTE)
            assert edit(mock).status_code == 429
            mock.fail_next(1, "server_error")
            assert edit(mock).status_code == 500

        def test_strict(qwen_mock_replay):
            mock = qwen_mock_replay(CASSETTE, strict=True)
            missed = httpx.post(mock.base_url + "/v1/images/edits", json={{**BODY, "seed": 2}}, headers=mock.headers)
            assert missed.status_code == 404 and "body.seed" in missed.json()["error"]["message"]

        def test_a_bad_cassette_fails_clearly(qwen_mock_replay, tmp_path):
            with pytest.raises(ValueError, match="no such cassette directory"):
                qwen_mock_replay(tmp_path / "missing")
    ''')
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_the_dashboard_shows_replayed_exchanges(cassette):
    from dashboard_support import Stream

    server = LiveServer({"QWEN_MOCK_REPLAY": str(cassette)})
    stream = Stream(server.base_url)
    try:
        body = powertokens_body(seed=9, response_format="b64_json")
        answer = httpx.post(server.base_url + EDITS, json=body, headers={**AUTH, "x-request-id": "replayed-1"})
        assert answer.headers["x-mock-replay"] == "hit"
        shown = stream.exchanges_until({"replayed-1"})["replayed-1"]
        assert shown["status"] == 200 and shown["response"]["headers"]["x-mock-replay"] == "hit"
        assert shown["outputs"] and shown["inputs"]  # the recorded image, as a picture
        # a link answer: the page loads the recorded bytes from /__mock/files/replay/, not journaled
        limited = httpx.post(server.base_url + EDITS, json=powertokens_body(), headers=AUTH)
        assert limited.status_code == 429  # the cassette recorded 429, then 200
        linked = httpx.post(server.base_url + EDITS, json=powertokens_body(), headers={**AUTH, "x-request-id": "r-3"})
        assert linked.status_code == 200 and linked.headers["x-mock-replay"] == "hit"
        [picture] = stream.exchanges_until({"r-3"})["r-3"]["outputs"]
        assert picture["link"].startswith("files/replay/")
        served = httpx.get(f"{server.base_url}/__mock/{picture['link']}")
        via_link = httpx.get(linked.json()["data"][0]["url"]).content
        assert served.status_code == 200 and served.content == via_link
        assert served.headers["content-type"] == "image/png"
        assert httpx.get(f"{server.base_url}/__mock/files/replay/forged.x.png").status_code == 404
    finally:
        stream.close()
        server.stop()

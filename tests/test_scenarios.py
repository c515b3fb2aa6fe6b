"""Scenarios (stateful faults scoped to a key or a session), chaos, and the OpenAI SDK's own
retries going through them."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from conftest import load_fixture, make_client

from mockserver import Settings, create_app
from mockserver.controls.network import SimulatedNetworkFault
from mockserver.controls.scenarios import Chaos

PT, MV = "/v1/images/edits", "/v1/images/generations"
MODELVERSE_BODY = {"model": "Qwen/Qwen-Image-Edit", "prompt": "Convert to a sketch", "image": "https://example.com/a.png"}


def call(client, session: str | None = None, key: str = "test-key", path: str = MV, **headers) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **headers}
    if session is not None:
        headers["X-Mock-Session"] = session
    body = MODELVERSE_BODY if path == MV else load_fixture("seed/powertokens-request.json")
    return client.post(path, json=body, headers=headers)


def statuses(client, n: int, **kwargs) -> list[int]:
    return [call(client, **kwargs).status_code for _ in range(n)]


def add(client, **spec) -> dict:
    response = client.post("/__mock/scenarios", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["scenarios"][0]


def listed(client, **params) -> list[dict]:
    return client.get("/__mock/scenarios", params=params).json()["scenarios"]


# --- the two kinds a retry test needs -----------------------------------------------------


def test_fail_the_next_n_calls_then_succeed(client):
    scenario = add(client, fault="rate_limit", times=2, session="a")
    assert scenario["id"] and scenario["fired"] == 0 and not scenario["used_up"]
    assert statuses(client, 4, session="a") == [429, 429, 200, 200]
    [after] = listed(client)
    assert (after["fired"], after["used_up"]) == (2, True)


def test_fail_every_kth_call(client):
    add(client, fault="server_error", every=3, session="a")
    assert statuses(client, 7, session="a") == [200, 200, 500, 200, 200, 500, 200]
    assert listed(client)[0]["calls"] == 7


def test_after_lets_calls_through_first(client):
    add(client, fault="overloaded", after=2, times=1, session="a")
    assert statuses(client, 4, session="a") == [200, 200, 503, 200]


def test_scenarios_in_one_scope_play_one_after_the_other(client):
    add(client, fault="rate_limit", times=2, session="a")
    add(client, fault="server_error", times=1, session="a")
    assert statuses(client, 4, session="a") == [429, 429, 500, 200]


def test_fault_options_apply(client):
    add(client, fault="rate_limit", times=1, retry_after_ms=15, session="a")
    response = call(client, session="a")
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "15"
    assert response.headers["x-mock-fault"] == "rate_limit"
    assert response.headers["x-mock-fault-source"].startswith("scenario s")
    assert "preference-applied" not in response.headers  # nothing was asked with Prefer


def test_a_latency_only_scenario_slows_the_next_call(client):
    add(client, latency_ms=300, times=1, session="a")
    started = time.monotonic()
    assert call(client, session="a").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert call(client, session="a").status_code == 200
    assert time.monotonic() - started < 0.3


def test_a_network_fault_scenario(client):
    add(client, fault="reset", times=1, session="a")
    with pytest.raises(SimulatedNetworkFault):
        call(client, session="a")
    assert call(client, session="a").status_code == 200


def test_provider_narrows_a_scenario(client):
    add(client, fault="server_error", provider="modelverse", session="a")
    assert call(client, session="a", path=PT).status_code == 200
    assert call(client, session="a", path=MV).status_code == 500


# --- scope -------------------------------------------------------------------------------


def test_two_sessions_do_not_see_each_others_scenarios(client):
    add(client, fault="rate_limit", times=2, session="a")
    add(client, fault="moderation", times=1, session="b")
    assert statuses(client, 2, session="c") == [200, 200]
    assert statuses(client, 1) == [200]  # no session at all
    assert statuses(client, 2, session="b") == [400, 200]
    assert statuses(client, 3, session="a") == [429, 429, 200]
    # b's calls did not count toward a's scenario, nor the other way round.
    by_session = {s["session"]: s for s in listed(client)}
    assert (by_session["a"]["calls"], by_session["b"]["calls"]) == (2, 1)


def test_scenarios_scoped_to_an_api_key(client):
    add(client, fault="invalid_key", api_key="sk-team-a")
    assert call(client, key="sk-team-b").status_code == 200
    assert call(client, key="sk-team-a").status_code == 401
    assert call(client, key="sk-team-a", session="any").status_code == 401


def test_listing_does_not_show_the_api_key(client):
    add(client, fault="server_error", api_key="sk-very-secret-key")
    response = client.get("/__mock/scenarios")
    assert "sk-very-secret-key" not in response.text
    assert listed(client)[0]["api_key"].startswith("[redacted sha256:")
    # ...but it can still be found by key.
    assert len(listed(client, api_key="sk-very-secret-key")) == 1
    assert listed(client, api_key="another") == []


def test_an_unscoped_scenario_applies_to_every_call(client):
    add(client, fault="server_error", times=2)
    assert call(client, session="x").status_code == 500
    assert call(client, key="other").status_code == 500
    assert call(client).status_code == 200


def test_prefer_wins_over_a_scenario_and_does_not_use_it_up(client):
    add(client, fault="rate_limit", times=1, session="a")
    assert call(client, session="a", Prefer="code=500").status_code == 500
    assert call(client, session="a", Prefer="code=200").status_code == 200
    assert call(client, session="a").status_code == 429


# --- the admin endpoint ----------------------------------------------------------------------


def test_post_a_list_adds_all(client):
    response = client.post("/__mock/scenarios", json=[
        {"fault": "rate_limit", "times": 1, "session": "a"}, {"fault": "server_error", "times": 1, "session": "a"}])
    assert response.status_code == 201
    assert [s["fault"] for s in response.json()["scenarios"]] == ["rate_limit", "server_error"]
    assert statuses(client, 3, session="a") == [429, 500, 200]


def test_delete_clears_all_or_one_scope_or_one(client):
    first = add(client, fault="server_error", session="a")
    add(client, fault="server_error", session="b")
    add(client, fault="server_error", session="b")
    assert client.delete("/__mock/scenarios", params={"session": "b"}).json()["deleted"] == 2
    assert [s["session"] for s in listed(client)] == ["a"]
    assert listed(client, session="a")[0]["id"] == first["id"]
    assert client.delete(f"/__mock/scenarios/{first['id']}").json()["deleted"] == 1
    assert client.delete(f"/__mock/scenarios/{first['id']}").status_code == 404
    add(client, fault="server_error", session="c")
    assert client.delete("/__mock/scenarios").json()["deleted"] == 1
    assert listed(client) == []
    assert call(client, session="c").status_code == 200


@pytest.mark.parametrize("spec, message", [
    ({"fault": "nope"}, "'nope' is not a fault"),
    ({"fault": "rate_limit", "tims": 2}, "unknown scenario field(s) tims"),
    ({"fault": "rate_limit", "times": 0}, "times must be an integer >= 1"),
    ({"fault": "rate_limit", "every": 0}, "every must be an integer >= 1"),
    ({"fault": "rate_limit", "after": -1}, "after must be an integer >= 0"),
    ({"fault": "rate_limit", "times": True}, "times must be an integer"),
    ({"fault": "rate_limit", "rate": 1.5}, "rate must be a number between 0 and 1"),
    ({"fault": "rate_limit", "provider": "openai"}, "provider must be one of dashscope, modelverse, powertokens"),
    ({"fault": "rate_limit", "session": ""}, "session must be a non-empty string"),
    ({"times": 2}, "needs a fault, a latency_ms, or both"),
    ({"latency_ms": -1}, "latency_ms must be a whole number"),
    ({"retry_after_ms": 5, "latency_ms": 5}, "go with a fault"),
    (["not", "objects"], "a scenario is a JSON object"),
])
def test_invalid_scenarios_are_a_clear_400(client, spec, message):
    response = client.post("/__mock/scenarios", json=spec)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_scenario"
    assert message in response.json()["error"]["message"]


def test_an_invalid_scenario_in_a_list_adds_none(client):
    response = client.post("/__mock/scenarios", json=[{"fault": "rate_limit"}, {"fault": "nope"}])
    assert response.status_code == 400
    assert listed(client) == []


def test_scenario_body_must_be_json(client):
    response = client.post("/__mock/scenarios", content=b"{fault: rate_limit}")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


# --- randomness, reproducible ----------------------------------------------------------------


def chaos_run(client, n: int = 60) -> list[tuple[int, str | None]]:
    outcome = []
    for _ in range(n):
        response = call(client)
        outcome.append((response.status_code, response.headers.get("x-mock-fault")))
    return outcome


def test_chaos_is_reproducible_for_a_seed_and_differs_for_another():
    runs = []
    for seed in (42, 42, 43):
        with make_client(chaos_rate=0.3, chaos_seed=seed) as client:
            runs.append(chaos_run(client))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    failed = [fault for status, fault in runs[0] if status != 200]
    assert 5 <= len(failed) <= 35  # about 30% of 60
    assert set(failed) <= {"rate_limit", "server_error", "overloaded", "timeout"}
    assert len(set(failed)) > 1


def test_chaos_picks_from_the_configured_faults():
    with make_client(chaos_rate=1.0, chaos_faults=("overloaded",)) as client:
        response = call(client)
    assert response.status_code == 503
    assert response.headers["x-mock-fault-source"] == "chaos"


def test_chaos_can_inject_network_faults():
    with make_client(chaos_rate=1.0, chaos_faults=("reset",)) as client:
        with pytest.raises(SimulatedNetworkFault):
            call(client)


def test_chaos_spares_calls_that_prefer_code_200_and_health_checks():
    with make_client(chaos_rate=1.0) as client:
        assert call(client, Prefer="code=200").status_code == 200
        assert client.get("/healthz").status_code == 200


def test_chaos_is_the_same_in_another_process(start_server):
    env = {"QWEN_MOCK_CHAOS_RATE": "0.25", "QWEN_MOCK_CHAOS_SEED": "7"}
    server = start_server(env)
    with httpx.Client(base_url=server.base_url) as live:
        over_the_wire = chaos_run(live, 40)
    with make_client(chaos_rate=0.25, chaos_seed=7) as client:
        assert chaos_run(client, 40) == over_the_wire


def test_chaos_settings_are_checked():
    with pytest.raises(ValueError, match="chaos_faults: unknown fault"):
        create_app(Settings(chaos_faults=("rate_limit", "explode")))
    with pytest.raises(ValueError, match="chaos_rate"):
        Settings(chaos_rate=1.5)
    assert not Chaos(0.0, 1, ["rate_limit"])


def test_a_scenario_with_a_rate_is_reproducible(client):
    def run() -> list[int]:
        client.delete("/__mock/scenarios")
        add(client, fault="server_error", rate=0.5, seed=11, session="r")
        return statuses(client, 30, session="r")

    first = run()
    assert first == run()
    assert 5 <= first.count(500) <= 25


# --- the OpenAI SDK's own retries ------------------------------------------------------------


def test_openai_sdk_retries_through_two_rate_limits(live_server):
    session = "sdk-retries-429"
    admin = httpx.Client(base_url=live_server.base_url)
    admin.post("/__mock/scenarios", json={"fault": "rate_limit", "times": 2, "retry_after_ms": 10,
                                          "session": session}).raise_for_status()
    sdk = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key="sk-test",
                        default_headers={"X-Mock-Session": session})  # the SDK's default: 2 retries
    started = time.monotonic()
    response = sdk.images.generate(model="Qwen/Qwen-Image-Edit", prompt="Convert to a sketch",
                                   extra_body={"image": "https://example.com/a.png"})
    # retry-after-ms=10 was honoured: the SDK's own backoff (0.5 s, then 1 s, less up to 25%
    # jitter) would have taken at least 1.1 s.
    assert time.monotonic() - started < 1.0
    assert response.data[0].url
    journal = admin.get("/__mock/requests", params={"session": session}).json()["requests"]
    assert [entry["status"] for entry in journal] == [429, 429, 200]
    assert [entry["fault"] for entry in journal] == ["rate_limit", "rate_limit", None]
    assert len({entry["request_id"] for entry in journal}) == 3
    admin.delete("/__mock/scenarios", params={"session": session})
    admin.close()


def test_openai_sdk_gives_up_after_its_retries(live_server):
    session = "sdk-retries-exhausted"
    admin = httpx.Client(base_url=live_server.base_url)
    admin.post("/__mock/scenarios", json={"fault": "server_error", "times": 5, "session": session}).raise_for_status()
    sdk = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key="sk-test", max_retries=1,
                        default_headers={"X-Mock-Session": session})
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.with_options(timeout=10).images.generate(
            model="Qwen/Qwen-Image-Edit", prompt="x", extra_body={"image": "https://example.com/a.png"})
    assert caught.value.status_code == 500
    assert caught.value.body["code"] == "internal_error"
    journal = admin.get("/__mock/requests", params={"session": session}).json()["requests"]
    assert [entry["status"] for entry in journal] == [500, 500]
    admin.delete("/__mock/scenarios", params={"session": session})
    admin.close()

"""Faults and latency asked for per request with the ``Prefer`` header: every status code,
every named fault, every form of the header, its errors, and the network faults seen by a
real client on a real socket."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from conftest import AUTH, load_fixture, make_client
from schema_data import error_field, has_error_field

from mockserver.controls.faults import Latency
from mockserver.providers import PROVIDERS as REGISTERED
from mockserver.controls.network import SimulatedNetworkFault

ROOT = Path(__file__).resolve().parent.parent
PATHS = {p.name: p.path for p in REGISTERED}
PROVIDERS = pytest.mark.parametrize("provider", list(PATHS))
CODES = {400: "moderation", 401: "authentication", 403: "forbidden", 408: "timeout", 429: "rate_limit",
         500: "internal_error", 503: "overloaded", 504: "gateway_timeout"}
# Named fault -> the error kind of the providers' catalogues; ``timeout`` is each provider's
# own (its error schema's ``x-timeout``).
NAMED = {
    "moderation": "moderation",
    "invalid_key": "authentication",
    "forbidden": "forbidden",
    "rate_limit": "rate_limit",
    "server_error": "internal_error",
    "overloaded": "overloaded",
    "request_timeout": "timeout",
    "gateway_timeout": "gateway_timeout",
    "timeout": None,
}


def expected_kind(fault: str, provider: str) -> str:
    return NAMED[fault] or error_schema(provider)["x-timeout"]


def catalogue(provider: str) -> dict:
    return json.loads((ROOT / "schemas" / provider / "error.json").read_text())["x-errors"]


def error_schema(provider: str) -> dict:
    return json.loads((ROOT / "schemas" / provider / "error.json").read_text())


def body_for(provider: str) -> dict:
    if provider == "modelverse":
        # A URL input: nothing to decode, so these tests stay fast.
        return {"model": "Qwen/Qwen-Image-Edit", "prompt": "Convert to a sketch", "image": "https://example.com/a.png"}
    return load_fixture(f"seed/{provider}-request.json")


def assert_provider_error(response: httpx.Response, provider: str, kind: str) -> dict:
    entry = catalogue(provider)[kind]
    assert response.status_code == entry["status"], response.text
    body = response.json()
    jsonschema.validate(body, error_schema(provider))
    if has_error_field(provider, "type"):
        assert error_field(provider, body, "type") == entry["type"]
    assert error_field(provider, body, "code") == entry["code"]
    assert response.headers["x-request-id"]
    if has_error_field(provider, "request_id"):
        assert error_field(provider, body, "request_id") == response.headers["x-request-id"]
    return body


@pytest.fixture
def post(client):
    def post(provider: str, prefer: str | list[str] | None = None, **kwargs) -> httpx.Response:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        if isinstance(prefer, list):
            headers = list(headers.items()) + [("Prefer", value) for value in prefer]
        elif prefer is not None:
            headers["Prefer"] = prefer.encode("latin-1")  # bytes: a header may carry any latin-1
        return client.post(PATHS[provider], json=kwargs.pop("json", body_for(provider)), headers=headers, **kwargs)

    return post


# --- Prefer: code=<status> -------------------------------------------------------------------


@PROVIDERS
@pytest.mark.parametrize("code", sorted(CODES))
def test_code_answers_with_the_providers_own_error(post, provider, code):
    response = post(provider, f"code={code}")
    assert_provider_error(response, provider, CODES[code])
    assert response.headers["preference-applied"] == f"code={code}"
    assert response.headers["x-mock-fault-source"] == "prefer"


@PROVIDERS
def test_code_200_answers_normally_and_says_so(post, provider):
    response = post(provider, "code=200")
    assert response.status_code == 200, response.text
    jsonschema.validate(response.json(), json.loads((ROOT / "schemas" / provider / "response.json").read_text()))
    assert response.headers["preference-applied"] == "code=200"
    assert "x-mock-fault" not in response.headers


@PROVIDERS
@pytest.mark.parametrize("code", ["418", "404", "201", "abc", "", "429.0", "-429", "²", "9" * 5000])
def test_unsupported_code_is_a_clear_400(post, provider, code):
    response = post(provider, f"code={code}")
    body = assert_provider_error(response, provider, "invalid_parameter")
    message = error_field(provider, body, "message")
    assert message.startswith("Prefer: code=") and " is not supported; use one of " in message
    if code.isascii():
        assert message.startswith(f"Prefer: code={code[:20]} is not supported")
    assert "200, 400, 401, 403, 408, 429, 500, 503, 504" in message
    assert "preference-applied" not in response.headers


# --- Prefer: fault=<name> --------------------------------------------------------------------


@PROVIDERS
@pytest.mark.parametrize("fault", sorted(NAMED))
def test_named_error_faults(post, provider, fault):
    kind = expected_kind(fault, provider)
    response = post(provider, f"fault={fault}")
    body = assert_provider_error(response, provider, kind)
    assert f"fault {fault} injected by the mock" in error_field(provider, body, "message")
    assert response.headers["preference-applied"] == f"fault={fault}"
    assert response.headers["x-mock-fault"] == fault


def test_timeout_is_408_on_powertokens_and_504_on_modelverse(post):
    assert post("powertokens", "fault=timeout").status_code == 408
    assert post("modelverse", "fault=timeout").status_code == 504


@PROVIDERS
def test_rate_limit_says_when_to_retry(post, provider):
    response = post(provider, "fault=rate_limit")
    assert response.status_code == 429
    # The default: one second, in both headers (the OpenAI SDK reads retry-after-ms first).
    assert response.headers["retry-after"] == "1"
    assert response.headers["retry-after-ms"] == "1000"


@PROVIDERS
def test_rate_limit_retry_after_can_be_chosen(post, provider):
    response = post(provider, "fault=rate_limit; retry-after-ms=2500")
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "2500"
    assert response.headers["retry-after"] == "3"  # whole seconds, rounded up
    assert response.headers["preference-applied"] == "fault=rate_limit, retry-after-ms=2500"


def test_overloaded_also_says_when_to_retry(post):
    response = post("modelverse", "code=503, retry-after-ms=20")
    assert response.status_code == 503
    assert response.headers["retry-after-ms"] == "20"
    assert response.headers["retry-after"] == "1"


def test_retry_after_setting_is_the_default():
    with make_client(retry_after_ms=250) as client:
        response = client.post(PATHS["modelverse"], json=body_for("modelverse"), headers={"Prefer": "code=429"})
    assert response.headers["retry-after-ms"] == "250"


def test_errors_other_than_429_and_503_carry_no_retry_after(post):
    response = post("powertokens", "code=500")
    assert "retry-after" not in response.headers and "retry-after-ms" not in response.headers


@PROVIDERS
@pytest.mark.parametrize("fault", ["nope", "RATE_LIMIT", "reset2", ""])
def test_unknown_fault_is_a_clear_400(post, provider, fault):
    response = post(provider, f"fault={fault}")
    body = assert_provider_error(response, provider, "invalid_parameter")
    assert error_field(provider, body, "message").startswith(f"Prefer: fault={fault} is not a fault the mock knows")
    assert "rate_limit" in error_field(provider, body, "message")


def test_a_fault_wins_over_authentication_and_validation(client):
    # A gateway's 429 comes before it looks at the key or the body.
    response = client.post(PATHS["powertokens"], json={"not": "valid"}, headers={"Prefer": "code=429"})
    assert response.status_code == 429


# --- the forms of the header -----------------------------------------------------------------


@pytest.mark.parametrize("prefer", [
    "code=429, latency=1",
    "code=429; latency=1",
    "latency=1;code=429",
    'CODE="429" , Latency = 1',
    "respond-async, code=429, wait=10, latency=1",
])
def test_preferences_in_any_order_separator_case_and_quoting(post, prefer):
    response = post("powertokens", prefer)
    assert response.status_code == 429
    assert response.headers["preference-applied"] == "code=429, latency=1"


def test_several_prefer_headers_combine(post):
    response = post("modelverse", ["latency=1", "fault=rate_limit", "retry-after-ms=5"])
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "5"
    assert response.headers["preference-applied"] == "fault=rate_limit, retry-after-ms=5, latency=1"


def test_the_first_instance_of_a_preference_counts(post):
    # RFC 7240: a preference given more than once counts the first time.
    response = post("powertokens", ["code=503", "code=500"])
    assert response.status_code == 503


def test_preferences_the_mock_does_not_know_are_ignored(post):
    response = post("powertokens", "return=minimal, respond-async")
    assert response.status_code == 200, response.text
    assert "preference-applied" not in response.headers


def test_options_that_do_not_apply_to_the_fault_are_not_reported(post):
    response = post("powertokens", "code=500, retry-after-ms=5, pause-ms=5")
    assert response.status_code == 500
    assert response.headers["preference-applied"] == "code=500"


def test_code_and_fault_together_is_a_400(post):
    response = post("powertokens", "code=500, fault=rate_limit")
    body = assert_provider_error(response, "powertokens", "invalid_parameter")
    assert "not both" in error_field("powertokens", body, "message")


@pytest.mark.parametrize("prefer, name", [
    ("latency=-5", "latency"), ("latency=fast", "latency"), ("latency=600001", "latency"), ("latency=³", "latency"),
    ("latency=" + "1" * 5000, "latency"),
    ("fault=rate_limit, retry-after-ms=soon", "retry_after_ms"), ("fault=slow_body, pause-ms=60001", "pause_ms"),
])
def test_bad_option_values_are_a_clear_400(post, prefer, name):
    response = post("modelverse", prefer)
    body = assert_provider_error(response, "modelverse", "invalid_parameter")
    assert error_field("modelverse", body, "message").startswith(f"Prefer: {name} must be a whole number of milliseconds")


def test_prefer_applies_to_the_edit_endpoints_only(client):
    assert client.get("/healthz", headers={"Prefer": "code=500"}).status_code == 200
    response = client.get("/openapi.json", headers={"Prefer": "fault=reset"})
    assert response.status_code == 200 and "preference-applied" not in response.headers


def test_fault_responses_keep_a_callers_request_id(post):
    response = post("modelverse", "code=500", headers={"x-request-id": "my-id-1"})
    assert response.headers["x-request-id"] == "my-id-1"
    assert response.json()["error"]["param"] == "my-id-1"


# --- latency --------------------------------------------------------------------------------


def test_prefer_latency_delays_the_answer(post):
    started = time.monotonic()
    response = post("powertokens", "latency=120")
    assert time.monotonic() - started >= 0.12
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "latency=120"


def test_prefer_latency_delays_a_fault_too(post):
    started = time.monotonic()
    response = post("modelverse", "latency=80, code=504")
    assert time.monotonic() - started >= 0.08
    assert response.status_code == 504


def test_global_latency_setting_delays_every_edit_call_but_not_health_checks():
    with make_client(latency=(300, 300)) as client:
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 0.3
        started = time.monotonic()
        response = client.post(PATHS["modelverse"], json=body_for("modelverse"))
        assert time.monotonic() - started >= 0.3
        assert response.status_code == 200
        assert "preference-applied" not in response.headers
        [entry] = client.get("/__mock/requests").json()["requests"]
        assert entry["latency_ms"] == 300
        # Prefer replaces it for one request.
        started = time.monotonic()
        client.post(PATHS["modelverse"], json=body_for("modelverse"), headers={"Prefer": "latency=0"})
        assert time.monotonic() - started < 0.3


def test_latency_range_is_reproducible_for_a_seed():
    first, again, other = (Latency(10, 500, seed=s) for s in (7, 7, 8))
    sequence = [first.next_ms() for _ in range(50)]
    assert sequence == [again.next_ms() for _ in range(50)]
    assert sequence != [other.next_ms() for _ in range(50)]
    assert all(10 <= ms <= 500 for ms in sequence) and len(set(sequence)) > 10


def test_latency_range_setting_delays_by_the_seeded_sequence():
    def delays(seed: int) -> list[int]:
        with make_client(latency=(1, 15), latency_seed=seed) as client:
            for _ in range(8):
                assert client.post(PATHS["modelverse"], json=body_for("modelverse")).status_code == 200
            return [entry["latency_ms"] for entry in client.get("/__mock/requests").json()["requests"]]

    expected = Latency(1, 15, seed=3)
    assert delays(3) == [expected.next_ms() for _ in range(8)]
    assert delays(3) == delays(3)


def test_latency_setting_rejects_bad_values():
    from mockserver import Settings
    from mockserver.core.settings import parse_latency

    assert parse_latency("250") == (250, 250)
    assert parse_latency(" 100-400 ") == (100, 400)
    for text in ("fast", "400-100", "-5", "1-2-3", "0-600001"):
        with pytest.raises(ValueError, match="latency"):
            parse_latency(text)
    with pytest.raises(ValueError, match="latency"):
        Settings(latency=(5, 1))


# --- network faults: a real client on a real socket ------------------------------------------


@pytest.fixture
def http(live_server):
    with httpx.Client(base_url=live_server.base_url, headers=AUTH, timeout=10) as client:
        yield client


@PROVIDERS
def test_reset_drops_the_connection_without_a_response(http, provider):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)) as caught:
        http.post(PATHS[provider], json=body_for(provider), headers={"Prefer": "fault=reset"})
    assert not isinstance(caught.value, httpx.TimeoutException)
    # The server is fine, and so is the next call on the same client.
    assert http.post(PATHS[provider], json=body_for(provider)).status_code == 200


@PROVIDERS
def test_truncated_promises_a_body_and_cuts_it_short(http, provider):
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
        http.post(PATHS[provider], json=body_for(provider), headers={"Prefer": "fault=truncated"})
    assert http.post(PATHS[provider], json=body_for(provider)).status_code == 200


def test_truncated_headers_arrive_before_the_cut(http):
    with http.stream("POST", PATHS["powertokens"], json=body_for("powertokens"),
                     headers={"Prefer": "fault=truncated"}) as response:
        assert response.status_code == 200
        assert response.headers["x-mock-fault"] == "truncated"
        assert response.headers["preference-applied"] == "fault=truncated"
        promised = int(response.headers["content-length"])
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                received += chunk
    assert 0 < len(received) < promised


def test_slow_body_arrives_whole_but_slowly(http):
    with http.stream("POST", PATHS["modelverse"], json=body_for("modelverse"),
                     headers={"Prefer": "fault=slow_body; pause-ms=25"}) as response:
        headers_at = time.monotonic()  # the headers come at once...
        chunks = [chunk for chunk in response.iter_raw() if chunk]
    assert response.status_code == 200
    assert time.monotonic() - headers_at >= 0.2  # ...the body in ten pieces, a 25 ms pause before each
    assert len(chunks) >= 2
    body = json.loads(b"".join(chunks))
    assert body["data"][0]["url"].startswith(http.base_url.__str__().rstrip("/") + "/files/")
    assert response.headers["preference-applied"] == "fault=slow_body, pause-ms=25"


def test_slow_body_trips_a_clients_read_timeout(http):
    with pytest.raises(httpx.ReadTimeout):
        http.post(PATHS["powertokens"], json=body_for("powertokens"),
                  headers={"Prefer": "fault=slow_body; pause-ms=400"},
                  timeout=httpx.Timeout(10, read=0.1))


def test_network_faults_are_in_the_journal(http):
    session = {"X-Mock-Session": "network-faults-journal"}
    for fault in ("reset", "truncated"):
        with pytest.raises(httpx.TransportError):
            http.post(PATHS["powertokens"], json=body_for("powertokens"), headers={"Prefer": f"fault={fault}", **session})
    entries = http.get("/__mock/requests", params={"session": "network-faults-journal"}).json()["requests"]
    assert [(e["fault"], e["status"]) for e in entries] == [("reset", None), ("truncated", 200)]


@pytest.mark.parametrize("fault", ["reset", "truncated"])
def test_in_process_network_faults_raise_in_the_client(client, fault):
    with pytest.raises(SimulatedNetworkFault, match=f"fault {fault}"):
        client.post(PATHS["powertokens"], json=body_for("powertokens"), headers={"Prefer": f"fault={fault}"})


def test_in_process_slow_body_still_answers(client):
    response = client.post(PATHS["powertokens"], json=body_for("powertokens"),
                           headers={"Prefer": "fault=slow_body, pause-ms=1"})
    assert response.status_code == 200 and response.json()["data"]


def test_a_client_that_gives_up_during_latency_frees_the_server(http):
    session = {"X-Mock-Session": "gives-up-during-latency"}
    with pytest.raises(httpx.ReadTimeout):
        http.post(PATHS["modelverse"], json=body_for("modelverse"), headers={"Prefer": "latency=30000", **session},
                  timeout=httpx.Timeout(10, read=0.1))
    # The mock stops waiting when the client leaves: the call is journaled, unanswered, long
    # before its 30 seconds.
    deadline = time.monotonic() + 5
    while True:
        entries = http.get("/__mock/requests", params={"session": "gives-up-during-latency"}).json()["requests"]
        if entries or time.monotonic() > deadline:
            break
        time.sleep(0.01)  # polling
    assert len(entries) == 1
    assert entries[0]["status"] is None and entries[0]["latency_ms"] == 30000
    assert entries[0]["duration_ms"] < 5000


# --- a key the endpoint refuses is refused first, as at a real gateway -------------------------


@PROVIDERS
@pytest.mark.parametrize("authorization", ["Bearer wrong-key", "Basic abc", None])
def test_a_refused_key_gets_401_whatever_it_prefers(provider, authorization):
    headers = {"Prefer": "code=429"}
    if authorization:
        headers["Authorization"] = authorization
    with make_client(api_keys=frozenset({"right-key"})) as client:
        client.headers.pop("Authorization")
        response = client.post(PATHS[provider], json=body_for(provider), headers=headers)
        assert_provider_error(response, provider, "authentication")
        assert "x-mock-fault" not in response.headers


@PROVIDERS
def test_unauthenticated_calls_use_up_no_scenario_and_no_chaos(provider):
    with make_client(api_keys=frozenset({"right-key"}), chaos_rate=1.0, chaos_faults=("rate_limit",)) as client:
        client.headers["Authorization"] = "Bearer right-key"
        assert client.post("/__mock/scenarios", json={"fault": "server_error", "times": 1}).status_code == 201
        for _ in range(3):
            refused = client.post(PATHS[provider], json=body_for(provider), headers={"Authorization": "Bearer no"})
            assert refused.status_code == 401
        [scenario] = client.get("/__mock/scenarios").json()["scenarios"]
        assert (scenario["calls"], scenario["fired"]) == (0, 0)
        # The first authenticated call meets the scenario, the next chaos.
        assert client.post(PATHS[provider], json=body_for(provider)).headers["x-mock-fault"] == "server_error"
        assert client.post(PATHS[provider], json=body_for(provider)).headers["x-mock-fault-source"] == "chaos"


def test_latency_applies_to_the_answer_after_the_body_is_read(post):
    started = time.perf_counter()
    response = post("powertokens", "latency=300")
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.3
    assert response.headers["preference-applied"] == "latency=300"

"""The request journal (GET/DELETE /__mock/requests): what it records, what it hides, its cap,
its filters; and the admin endpoints switched off or behind a token."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import time

import pytest
from conftest import FIXTURES, load_fixture, make_client
from PIL import Image

from mockserver.controls.journal import EAGER_BYTES

PT, MV = "/v1/images/edits", "/v1/images/generations"
TOKEN = "sk-live-abcdef0123456789"
PNG = (FIXTURES / "images" / "input-512.png").read_bytes()
PNG_B64 = base64.b64encode(PNG).decode()


def modelverse_body(image: str = f"data:image/png;base64,{PNG_B64}") -> dict:
    return {"model": "Qwen/Qwen-Image-Edit", "prompt": "Convert to a sketch", "image": image}


def powertokens_body(image: str) -> dict:
    body = load_fixture("seed/powertokens-request.json")
    body["input"]["messages"][0]["content"][0]["image"] = image
    body["n"], body["size"] = 1, "512*512"
    return body


def journal(client, **params) -> dict:
    response = client.get("/__mock/requests", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def entries(client, **params) -> list[dict]:
    return journal(client, **params)["requests"]


def noise_png(side: int) -> bytes:
    """A PNG that does not compress, so its base64 is as large as we ask."""
    rng = random.Random(side)
    image = Image.frombytes("RGB", (side, side), bytes(rng.getrandbits(8) for _ in range(side * side * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def client():
    with make_client() as test_client:
        yield test_client


def test_an_entry_says_what_was_received_and_answered(client):
    before = time.time()
    response = client.post(MV, json=modelverse_body(), params={"trace": "1"},
                           headers={"Authorization": f"Bearer {TOKEN}", "X-Mock-Session": "s1", "X-Custom": "yes"})
    assert response.status_code == 200, response.text
    [entry] = entries(client)
    assert entry["method"] == "POST"
    assert entry["path"] == MV and entry["query"] == "trace=1"
    assert entry["provider"] == "modelverse"
    assert entry["status"] == 200
    assert entry["request_id"] == response.headers["x-request-id"]
    assert entry["session"] == "s1"
    assert before <= entry["time"] <= time.time()
    assert entry["headers"]["x-custom"] == "yes"
    assert entry["headers"]["content-type"] == "application/json"
    assert entry["body"]["prompt"] == "Convert to a sketch"
    assert entry["body_bytes"] == len(response.request.content)
    assert entry["fault"] is None and entry["latency_ms"] == 0
    assert entry["duration_ms"] > 0
    assert isinstance(entry["id"], int) and isinstance(entry["worker"], int)


def test_credentials_are_redacted(client):
    client.post(PT, json=powertokens_body("https://example.com/a.png"),
                headers={"Authorization": f"Bearer {TOKEN}", "X-Api-Key": "key-in-header-42",
                         "Cookie": "session=cookie-secret-99", "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0"})
    text = json.dumps(journal(client))
    for secret in (TOKEN, "key-in-header-42", "cookie-secret-99", "cHJveHk6c2VjcmV0"):
        assert secret not in text
    headers = entries(client)[0]["headers"]
    fingerprint = hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
    # A fingerprint tells keys apart without revealing them.
    assert headers["authorization"] == f"Bearer [redacted sha256:{fingerprint}]"
    assert headers["x-api-key"].startswith("[redacted sha256:")
    assert headers["cookie"].startswith("[redacted sha256:")
    assert headers["proxy-authorization"].startswith("Basic [redacted sha256:")


def test_image_data_becomes_size_and_sha256(client):
    assert client.post(MV, json=modelverse_body()).status_code == 200
    assert client.post(MV, json=modelverse_body(image=PNG_B64)).status_code == 200  # bare base64
    assert client.post(PT, json=powertokens_body(f"data:image/png;base64,{PNG_B64}")).status_code == 200
    summary = {"bytes": len(PNG), "sha256": hashlib.sha256(PNG).hexdigest()}
    data_uri, bare, powertokens = entries(client)
    assert data_uri["body"]["image"] == {"media_type": "image/png", **summary}
    assert bare["body"]["image"] == {"media_type": None, **summary}
    content = powertokens["body"]["input"]["messages"][0]["content"]
    assert content[0]["image"] == {"media_type": "image/png", **summary}
    assert content[1] == {"text": "Replace the background with a seaside sunset"}
    assert PNG_B64[:64] not in json.dumps(journal(client))


def test_large_bodies_are_reduced_too(client):
    png = noise_png(96)
    assert len(base64.b64encode(png)) > EAGER_BYTES  # recorded on the other path
    assert client.post(MV, json=modelverse_body(f"data:image/png;base64,{base64.b64encode(png).decode()}")
                       ).status_code == 200
    [entry] = entries(client)
    assert entry["body"]["image"] == {"media_type": "image/png", "bytes": len(png),
                                      "sha256": hashlib.sha256(png).hexdigest()}
    assert entry["body_bytes"] > EAGER_BYTES
    assert len(json.dumps(entry)) < 2000


def test_undecodable_image_data_is_summarised_not_kept(client):
    bad = "data:image/png;base64," + "@" * 400
    response = client.post(MV, json=modelverse_body(bad))
    assert response.status_code == 400
    [entry] = entries(client)
    assert entry["status"] == 400
    assert entry["body"]["image"]["decodes"] is False
    assert entry["body"]["image"]["base64_chars"] == 400
    assert "@@@@" not in json.dumps(entry)


def test_url_images_and_short_texts_stay_as_they_are(client):
    client.post(PT, json=powertokens_body("https://example.com/source.webp"))
    content = entries(client)[0]["body"]["input"]["messages"][0]["content"]
    assert content[0] == {"image": "https://example.com/source.webp"}


def test_a_body_that_is_not_json_is_previewed(client):
    client.post(MV, content=b"model=Qwen&prompt=hello", headers={"Content-Type": "application/x-www-form-urlencoded"})
    [entry] = entries(client)
    assert entry["status"] == 400
    assert entry["body"] is None
    assert entry["body_preview"] == "model=Qwen&prompt=hello"


def test_faults_and_preferences_are_recorded(client):
    client.post(MV, json=modelverse_body(), headers={"Prefer": "code=429, latency=5"})
    [entry] = entries(client)
    assert entry["status"] == 429
    assert (entry["fault"], entry["fault_source"]) == ("rate_limit", "prefer")
    assert entry["preference_applied"] == "code=429, latency=5"
    assert entry["latency_ms"] == 5


def test_other_paths_are_recorded_but_not_the_mocks_own(client):
    url = client.post(PT, json=powertokens_body("https://example.com/a.png")).json()["data"][0]["url"]
    assert client.get(url).status_code == 200
    assert client.post("/v1/images/edit", json={}).status_code == 404
    client.get("/healthz")
    client.get("/__mock/scenarios")
    client.get("/__mock/requests")
    recorded = [(e["method"], e["path"].split("/files/")[0] + ("/files/" if "/files/" in e["path"] else ""),
                 e["provider"], e["status"]) for e in entries(client)]
    assert recorded == [("POST", PT, "powertokens", 200), ("GET", "/files/", None, 200),
                        ("POST", "/v1/images/edit", None, 404)]


def test_a_wrong_method_on_an_edit_path_is_recorded_without_a_provider(client):
    assert client.get(PT).status_code == 405
    [entry] = entries(client)
    assert (entry["method"], entry["status"], entry["provider"]) == ("GET", 405, None)


def test_the_journal_is_bounded():
    with make_client(journal_cap=5) as client:
        ids = [client.post(MV, json=modelverse_body("https://example.com/a.png")).headers["x-request-id"]
               for _ in range(12)]
        listing = journal(client)
    assert listing["cap"] == 5
    assert listing["dropped"] == 7
    assert [e["request_id"] for e in listing["requests"]] == ids[-5:]


def test_filters(client):
    for session, path, body in [("a", MV, modelverse_body()), ("b", MV, modelverse_body()),
                                ("a", PT, powertokens_body("https://example.com/a.png"))]:
        client.post(path, json=body, headers={"X-Mock-Session": session})
    assert [e["session"] for e in entries(client, session="a")] == ["a", "a"]
    assert [e["provider"] for e in entries(client, provider="modelverse")] == ["modelverse", "modelverse"]
    assert [(e["provider"], e["session"]) for e in entries(client, provider="powertokens", session="a")] == [
        ("powertokens", "a")]
    assert entries(client, session="nobody") == []
    assert [e["session"] for e in entries(client, limit=2)] == ["b", "a"]  # the most recent
    assert entries(client, limit=0) == []


@pytest.mark.parametrize("params", [{"provider": "openai"}, {"limit": "-1"}, {"limit": "ten"}])
def test_bad_filters_are_a_400(client, params):
    response = client.get("/__mock/requests", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_filter"


def test_delete_empties_it_and_ids_keep_growing(client):
    client.post(MV, json=modelverse_body())
    [first] = entries(client)
    assert client.delete("/__mock/requests").json()["deleted"] == 1
    assert journal(client) == {"requests": [], "cap": 1000, "dropped": 0, "worker": first["worker"]}
    client.post(MV, json=modelverse_body())
    assert entries(client)[0]["id"] > first["id"]


def test_journal_cap_zero_turns_it_off():
    with make_client(journal_cap=0) as client:
        client.post(MV, json=modelverse_body())
        listing = journal(client)
        assert listing["requests"] == [] and listing["cap"] == 0
        # The rest of the controls still work.
        assert client.post(MV, json=modelverse_body(), headers={"Prefer": "code=503"}).status_code == 503


# --- the admin endpoints: off, or behind a token ---------------------------------------------


ADMIN_CALLS = [("GET", "/__mock/requests"), ("DELETE", "/__mock/requests"), ("GET", "/__mock/scenarios"),
               ("POST", "/__mock/scenarios"), ("DELETE", "/__mock/scenarios"), ("DELETE", "/__mock/scenarios/s1")]


@pytest.mark.parametrize("method, path", ADMIN_CALLS)
def test_admin_disabled_is_404(method, path):
    with make_client(disable_admin=True) as client:
        response = client.request(method, path, json={"fault": "rate_limit"} if method == "POST" else None)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        # The API itself is unaffected, and nothing is journaled for nobody to read.
        assert client.post(MV, json=modelverse_body()).status_code == 200
        assert client.app.state.journal is None


@pytest.mark.parametrize("method, path", ADMIN_CALLS)
def test_admin_token_required(method, path):
    body = {"fault": "rate_limit"} if method == "POST" else None
    with make_client(admin_token="admin-s3cret") as client:
        client.headers.pop("Authorization")
        missing = client.request(method, path, json=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "admin_token_required"
        wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 403
        assert wrong.json()["error"]["code"] == "admin_token_invalid"
        assert client.request(method, path, json=body, headers={"X-Mock-Admin-Token": "nope"}).status_code == 403
        expected = 201 if method == "POST" else 404 if path.endswith("/s1") else 200  # there is no s1
        for headers in ({"Authorization": "Bearer admin-s3cret"}, {"X-Mock-Admin-Token": "admin-s3cret"}):
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == expected, response.text


def test_admin_token_does_not_change_the_api():
    with make_client(admin_token="admin-s3cret") as client:
        assert client.post(MV, json=modelverse_body()).status_code == 200


# --- bounds: bytes as well as entries, long strings cut, any nesting, no raw binary ----------

from mockserver.controls.journal import STRING_LIMIT, Journal, JournalEntry  # noqa: E402


def test_long_prompts_are_cut_with_a_marker_saying_how_much(client):
    prompt = "a cat " * ((STRING_LIMIT + 12345) // 6)
    body = {"model": "Qwen/Qwen-Image-Edit", "prompt": prompt, "image": "https://example.com/a.png"}
    assert client.post(MV, json=body).status_code == 200
    recorded = entries(client)[-1]["body"]["prompt"]
    assert recorded == prompt[:STRING_LIMIT] + f"...[truncated {len(prompt) - STRING_LIMIT} characters]"


def test_long_header_values_are_cut_with_a_marker(client):
    value = "v" * (STRING_LIMIT + 7)
    client.get("/nope", headers={"X-Long": value})
    assert entries(client)[-1]["headers"]["x-long"] == "v" * STRING_LIMIT + "...[truncated 7 characters]"


def test_the_journal_is_bounded_in_bytes_the_oldest_dropped_first():
    with make_client(journal_max_bytes=256 * 1024) as client:
        for _ in range(40):
            client.post(MV, json=modelverse_body("https://example.com/a.png") | {"prompt": "a cat " * 40_000})
        kept = journal(client)
        assert 0 < len(kept["requests"]) < 40
        assert kept["dropped"] == 40 - len(kept["requests"])
        assert len(json.dumps(kept)) < 256 * 1024


def test_the_byte_count_follows_entries_out_and_back():
    journal_ = Journal(cap=3, max_bytes=10**9)
    scope = {"method": "GET", "path": "/x", "headers": [(b"a", b"b")], "query_string": b""}
    for _ in range(5):
        entry = JournalEntry(0.0, scope, None, "id")
        entry.set_body(b"{}", 2)
        journal_.record(entry)
    assert len(journal_.entries()) == 3
    assert journal_.size == 3 * entry.size
    journal_.clear()
    assert journal_.size == 0


@pytest.mark.parametrize("depth", [40, 300, 5000])
@pytest.mark.parametrize("path", [PT, MV])
def test_bodies_nested_deeply_are_journaled_and_can_be_read_back(client, path, depth):
    body = "[" * depth + "]" * depth
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    entry = entries(client)[-1]
    assert entry["body_bytes"] == len(body)
    assert entry["body"] is not None or entry["body_preview"] is not None


def test_a_multipart_form_is_refused_with_the_recipe_and_not_journaled_raw(client):
    from conftest import FIXTURES as _  # noqa: F401
    from openai import BadRequestError, OpenAI

    sdk = OpenAI(base_url="http://testserver/v1", api_key="test", http_client=client, max_retries=0)
    with pytest.raises(BadRequestError) as caught:
        sdk.images.edit(model="Qwen/Qwen-Image-Edit", image=("in.png", PNG, "image/png"), prompt="snow")
    error = caught.value.body
    # The SDK's images.edit posts to /images/edits: powertokens' endpoint.
    assert "not multipart/form-data" in error["message"]
    assert "client.post(\"/images/edits\"" in error["message"]
    entry = entries(client)[-1]
    assert entry["body"] is None
    assert "PNG" not in entry["body_preview"] and "\x89" not in entry["body_preview"]
    assert entry["body_preview"].startswith(f"[{entry['body_bytes']} bytes, not text: sha256 ")

"""The dashboard without a browser (``tests/browser/`` has the tests in one): the page and its
files, the token gate and its session cookie, the rule and source of an error, the answers and
previews the journal now keeps (and their bounds), the view of an exchange, copy as curl, and
the live stream on a real port: live, filtered, resumable, capped, and bounded for a page that
does not read."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shlex
import subprocess
import sys
import time

import httpx
import orjson
import pytest
from conftest import make_client
from dashboard_support import (
    AUTH,
    DS,
    MV,
    PNG,
    PT,
    Stream,
    asgi_call,
    body_of,
    dashscope_body,
    data_uri,
    emptied,
    modelverse_body,
    noise_png,
    powertokens_body,
    status_of,
)
from PIL import Image

from mockserver import Settings, create_app
from mockserver.controls.exchange_view import ExchangeViewer
from mockserver.controls.journal import PREVIEW_SHARE
from mockserver.controls.live import PAGE_CAP
from mockserver.controls.previews import THUMBNAIL_SIDE, WHOLE_BYTES, make_preview, sniff
from mockserver.providers import PROVIDERS

TOKEN = "dashboard-s3cret"


def entries(client) -> list:
    return list(client.app.state.journal.latest(10**6))[::-1]


def view_of(client, entry) -> dict:
    journal = client.app.state.journal
    providers = [provider(Settings()) for provider in PROVIDERS]
    return ExchangeViewer(providers, journal.previews).view(entry, journal.worker)


def decoded(src: str) -> Image.Image:
    _, _, payload = src.partition("base64,")
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return image


# --- the page and its files ----------------------------------------------------------------------


def test_the_page_is_one_html_page_from_the_package_with_nothing_from_elsewhere(client):
    response = client.get("/__mock/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert 'src="static/dashboard.js"' in response.text and "http" not in response.text.replace("http-equiv", "")
    for name, media_type in [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css"),
                             ("login.js", "text/javascript")]:
        asset = client.get(f"/__mock/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media_type)
        assert "https://" not in asset.text and "//cdn" not in asset.text
        assert client.get(f"/__mock/static/{name}", headers={"If-None-Match": asset.headers["etag"]}).status_code == 304
    for name in ("nope.js", "index.html", "..%2Fdashboard.py", "dashboard.py"):
        missing = client.get(f"/__mock/static/{name}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/", "/__mock"])
def test_the_ways_to_the_page_redirect_to_it_and_are_not_journaled(client, path):
    response = client.get(path, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, "/__mock/")
    client.get("/__mock/")
    client.get("/__mock/static/dashboard.js")
    assert entries(client) == []


DASHBOARD_CALLS = [("GET", "/"), ("GET", "/__mock"), ("GET", "/__mock/"), ("GET", "/__mock/static/dashboard.js"),
                   ("POST", "/__mock/session"), ("DELETE", "/__mock/session"), ("GET", "/__mock/events"),
                   ("GET", "/__mock/files/abc.def.0.png")]


@pytest.mark.parametrize("method, path", DASHBOARD_CALLS)
def test_disable_admin_removes_the_page_and_its_data(method, path):
    with make_client(disable_admin=True) as client:
        response = client.request(method, path, follow_redirects=False)
        assert response.status_code == 404, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "not_found"


# --- the token gate ------------------------------------------------------------------------------


@pytest.fixture
def gated():
    with make_client(admin_token=TOKEN) as client:
        client.headers.pop("Authorization")  # the API's key would be taken for a (wrong) admin token
        yield client


def test_without_the_token_the_page_is_a_login_form_and_the_data_is_refused(gated):
    gated.post(MV, json=modelverse_body(prompt="a secret prompt"), headers=AUTH)
    page = gated.get("/__mock/")
    assert page.status_code == 401 and page.headers["www-authenticate"] == "Bearer"
    assert 'id="login"' in page.text and "secret" not in page.text and "static/login.js" in page.text
    assert "content-security-policy" in page.headers
    for path in ("/__mock/events", "/__mock/requests", "/__mock/files/abc.def.0.png"):
        refused = gated.get(path)
        assert refused.status_code == 401, path
        assert refused.json()["error"]["code"] == "admin_token_required"
    # The code of the page is not data: the login form needs it.
    assert gated.get("/__mock/static/login.js").status_code == 200


def test_the_token_buys_a_cookie_that_is_not_the_token(gated):
    assert gated.post("/__mock/session").status_code == 401
    assert gated.post("/__mock/session", headers={"Authorization": "Bearer guess"}).status_code == 403
    login = gated.post("/__mock/session", headers={"Authorization": f"Bearer {TOKEN}"})
    assert login.status_code == 204
    cookie = login.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    value = rest.partition(";")[0]
    assert name == "qwen_mock_admin_80" and len(value) == 64 and TOKEN not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/__mock"} <= {part.strip() for part in cookie.split(";")}
    # The client keeps the cookie: the page, the journal and scenarios now answer.
    assert gated.get("/__mock/").status_code == 200 and 'id="exchanges"' in gated.get("/__mock/").text
    assert gated.get("/__mock/requests").status_code == 200
    # A change on the strength of the cookie alone is refused (another origin could make it).
    refused = gated.delete("/__mock/requests")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "admin_header_required")
    assert gated.delete("/__mock/requests", headers={"X-Mock-Dashboard": "1"}).status_code == 200
    assert gated.post("/__mock/scenarios", json={"fault": "rate_limit"},
                      headers={"X-Mock-Dashboard": "1"}).status_code == 201
    logout = gated.delete("/__mock/session")
    assert logout.status_code == 204 and "Max-Age=0" in logout.headers["set-cookie"]
    assert gated.get("/__mock/requests").status_code == 401


def test_a_forged_or_stale_cookie_opens_nothing(gated):
    for value in ("0" * 64, TOKEN, "", "x" * 5000):
        gated.cookies.set("qwen_mock_admin_80", value)
        assert gated.get("/__mock/").status_code == 401
        assert gated.get("/__mock/requests").status_code == 401
    with make_client(admin_token="another-token") as other:
        other.post("/__mock/session", headers={"Authorization": "Bearer another-token"})
        stale = other.cookies.get("qwen_mock_admin_80")
    gated.cookies.set("qwen_mock_admin_80", stale)
    assert gated.get("/__mock/requests").status_code == 401


def test_the_token_in_a_header_opens_the_page_too(gated):
    # For curl and scripts: the same headers as the rest of /__mock/.
    assert gated.get("/__mock/", headers={"X-Mock-Admin-Token": TOKEN}).status_code == 200
    assert gated.get("/__mock/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert gated.get("/__mock/", headers={"Authorization": "Bearer guess"}).status_code == 401


# --- the rule and source of an error ----------------------------------------------------------------


def test_a_schema_rule_names_itself_and_its_source_in_headers(client):
    response = client.post(PT, json=powertokens_body(n=9))
    assert response.status_code == 400
    assert (response.headers["x-mock-rule"], response.headers["x-mock-rule-source"]) == ("maximum", "doc")
    missing = client.post(MV, json={"model": "Qwen/Qwen-Image-Edit", "prompt": "x"})
    assert missing.headers["x-mock-rule"] == "required" and missing.headers["x-mock-rule-source"] in (
        "doc", "upstream", "assumption")
    # Errors no schema rule decided carry none.
    assert "x-mock-rule" not in client.post(MV, content=b"not json").headers
    assert "x-mock-rule" not in client.post(MV, json=modelverse_body(), headers={"Prefer": "code=429"}).headers


# --- what the journal keeps now: the answer, and previews ----------------------------------------


def test_a_json_answer_is_kept_with_the_entry_and_a_png_is_not(client):
    answer = client.post(PT, json=powertokens_body())
    link = answer.json()["data"][0]["url"]
    png = client.get(link)
    assert png.status_code == 200
    edit, download = entries(client)
    assert edit.response == answer.content and edit.response_bytes == len(answer.content)
    assert dict(edit.response_headers)[b"x-mock-seed"] == answer.headers["x-mock-seed"].encode()
    assert download.response is None and download.response_bytes == len(png.content)
    # The public journal is as it was: requests only.
    assert "response" not in client.get("/__mock/requests").json()["requests"][0]


def test_a_large_answer_is_reduced_when_recorded_and_leaves_previews_of_its_images(client):
    # Six 2048x2048 images as base64: over the journal's 16 KiB, so reduced at once.
    answer = client.post(PT, json=powertokens_body(n=6, size="2048*2048", response_format="b64_json"))
    assert answer.status_code == 200 and len(answer.content) > 16 * 1024
    [entry] = entries(client)
    assert not isinstance(entry.response, bytes) and b"base64" not in orjson.dumps(entry.response.body)
    view = view_of(client, entry)
    assert len(view["outputs"]) == 6
    for output, item in zip(view["outputs"], answer.json()["data"], strict=True):
        png = base64.b64decode(item["b64_json"])
        assert output["sha256"] == hashlib.sha256(png).hexdigest()
        # The mock's own images are small enough to be kept whole: full size for b64 too.
        preview = view["previews"][output["sha256"]]
        assert preview["whole"] and decoded(preview["src"]).size == (2048, 2048)


def test_inline_images_leave_previews_whole_when_small_and_as_thumbnails_when_large(client):
    client.app.state.journal.watch(lambda: None)  # as while a page is open
    large = noise_png(300)  # ~270 KB: the body is reduced when recorded
    assert client.post(MV, json=modelverse_body(data_uri(large))).status_code == 200
    assert client.post(MV, json=modelverse_body(data_uri(PNG), response_format="b64_json")).status_code == 200
    store = client.app.state.journal.previews
    thumbnail = store.get(hashlib.sha256(large).hexdigest())
    assert thumbnail is not None and thumbnail != large and sniff(thumbnail) == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail)).size) == THUMBNAIL_SIDE
    big_view, small_view = (view_of(client, entry) for entry in entries(client))
    [big_input] = big_view["inputs"]
    assert big_input["sha256"] == hashlib.sha256(large).hexdigest() and big_input["where"] == "image"
    assert big_view["previews"][big_input["sha256"]]["whole"] is False
    [small_input] = small_view["inputs"]
    small_preview = small_view["previews"][small_input["sha256"]]
    assert small_preview["whole"] is True and decoded(small_preview["src"]).size == (512, 512)
    # The answer's image, base64 in a small answer: whole, so "full size" works.
    [output] = small_view["outputs"]
    assert small_view["previews"][output["sha256"]]["whole"] is True


def test_with_no_page_open_recording_makes_no_thumbnail(client, monkeypatch):
    """Nothing per request beyond what the journal did: it decoded and hashed image data; a
    thumbnail would decode the image too. Images that are their own preview are kept (a copy)."""
    import mockserver.controls.previews as previews

    decoded_images = []
    thumbnail = previews._thumbnail
    monkeypatch.setattr(previews, "_thumbnail", lambda image: decoded_images.append(image.size) or thumbnail(image))
    large, small = noise_png(300, seed=1), noise_png(40, seed=2)  # ~270 KB and ~5 KB
    body = modelverse_body(data_uri(large)) | {"negative_prompt": data_uri(small)}
    assert client.post(MV, json=body).status_code in (200, 400)
    store = client.app.state.journal.previews
    assert decoded_images == [] and store.get(hashlib.sha256(large).hexdigest()) is None
    assert store.get(hashlib.sha256(small).hexdigest()) == small
    # The page says there is no picture, rather than waiting for one.
    view = view_of(client, entries(client)[0])
    assert view["previews"][hashlib.sha256(large).hexdigest()]["src"] is None


def test_a_preview_is_only_ever_an_image_a_browser_shows():
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'
    assert sniff(svg) is None and make_preview(svg) == b""
    assert make_preview(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100) == b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    bmp = io.BytesIO()
    Image.new("RGB", (600, 300), (10, 20, 30)).save(bmp, format="BMP")
    thumbnail = make_preview(bmp.getvalue())
    assert sniff(thumbnail) == "image/jpeg" and Image.open(io.BytesIO(thumbnail)).size == (256, 128)
    assert make_preview(b"not an image at all" * 10_000) == b""
    assert len(make_preview(PNG)) == len(PNG) <= WHOLE_BYTES


def test_an_svg_claimed_as_an_image_is_never_shown(client):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    client.post(MV, json=modelverse_body(data_uri(svg, "image/svg+xml")))
    [entry] = entries(client)
    view = view_of(client, entry)
    [image] = view["inputs"]
    assert view["previews"][image["sha256"]]["src"] is None


def test_previews_take_at_most_a_quarter_of_the_journal_budget_and_count_in_it():
    budget = 256 * 1024
    with make_client(journal_max_bytes=budget) as client:
        client.app.state.journal.watch(lambda: None)  # as while a page is open: thumbnails made
        for seed in range(12):
            client.post(MV, json=modelverse_body(data_uri(noise_png(260, seed))))
        journal = client.app.state.journal
        assert 0 < journal.previews.size <= budget // PREVIEW_SHARE
        assert journal.size + journal.previews.size <= budget
        assert journal.held >= 1


# --- an exchange as the page shows it ---------------------------------------------------------------


@pytest.mark.parametrize("path, body, rule", [
    (PT, powertokens_body(n=9), "maximum"),
    (MV, modelverse_body(n=9), "maximum"),
    (DS, dashscope_body(n=9), "maximum"),
])
def test_an_error_shows_its_message_code_rule_and_source_in_every_envelope(client, path, body, rule):
    answer = client.post(path, json=body)
    assert answer.status_code == 400
    [entry] = entries(client)
    error = view_of(client, entry)["error"]
    assert error["message"] and "n: 9 is greater than the maximum of " in error["message"]
    assert error["code"] and error["rule"] == rule and error["source"] in ("doc", "upstream", "assumption")
    assert error["violations"] and error["violations"][0] == error["message"]


def test_a_fault_is_marked_and_a_dropped_connection_has_no_status(client):
    client.post("/__mock/scenarios", json={"fault": "rate_limit", "times": 1})
    client.post(MV, json=modelverse_body())
    [entry] = entries(client)
    view = view_of(client, entry)
    assert (view["status"], view["fault"], view["fault_source"]) == (429, "rate_limit", "scenario s1")
    assert view["error"]["message"].startswith("Requests rate limit exceeded")
    assert view["error"]["rule"] is None


def test_links_become_the_dashboards_own_and_downloads_show_their_image(client):
    answer = client.post(PT, json=powertokens_body(n=2)).json()
    client.get(answer["data"][1]["url"])
    edit, download = (view_of(client, entry) for entry in entries(client))
    assert [o["url"] for o in edit["outputs"]] == [d["url"] for d in answer["data"]]
    assert all(o["link"].startswith("files/") and o["link"].endswith(".png") for o in edit["outputs"])
    assert edit["inputs"] == [{"url": "https://example.com/cat.png", "where": "input.messages[0].content[0].image"}]
    assert download["outputs"][0]["link"] == edit["outputs"][1]["link"]
    # The page's loads go to /__mock/files/: the image, and no journal entry.
    before = client.app.state.journal.last_id
    image = client.get("/__mock/" + edit["outputs"][0]["link"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == client.get(answer["data"][0]["url"]).content
    assert client.app.state.journal.last_id == before + 1  # the /files/ download above, not the page's
    assert client.get("/__mock/files/abc.def.0.png").status_code == 404


# --- copy as curl ----------------------------------------------------------------------------------


def run_curl(command: str, cwd) -> dict:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, capture_output=True, text=True,
                          timeout=30, env={**os.environ, "API_KEY": "another-key"})
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


@pytest.fixture(scope="module")
def mock_on_a_port():
    from conftest import LiveServer

    server = LiveServer()
    yield server
    server.stop()


def test_copy_as_curl_reproduces_a_request_with_its_image_and_without_its_key(mock_on_a_port, tmp_path):
    base = mock_on_a_port.base_url
    httpx.delete(f"{base}/__mock/requests")
    sent = httpx.post(f"{base}{MV}", json=modelverse_body(response_format="b64_json"),
                      headers={"Authorization": "Bearer sk-very-secret"}).json()
    with make_client() as client:  # the same request, to view its entry the way the page does
        client.post(MV, json=modelverse_body(response_format="b64_json"),
                    headers={"Authorization": "Bearer sk-very-secret", "Host": mock_on_a_port.base_url[7:]})
        command = view_of(client, entries(client)[0])["curl"]
    assert "sk-very-secret" not in command and "${API_KEY:-test}" in command
    assert data_uri(PNG) in command  # the image data is included
    again = run_curl(command, tmp_path)
    assert again["data"] == sent["data"]  # the same request, so the same image


def test_copy_as_curl_references_the_images_of_a_reduced_body_by_file(mock_on_a_port, tmp_path):
    base = mock_on_a_port.base_url
    large = noise_png(200, seed=3)
    body = powertokens_body(data_uri(large), response_format="b64_json")
    sent = httpx.post(f"{base}{PT}", json=body, headers=AUTH).json()
    with make_client() as client:
        client.post(PT, json=body, headers={"Host": base[7:]})
        command = view_of(client, entries(client)[0])["curl"]
    name = f"image-{hashlib.sha256(large).hexdigest()[:12]}.png"
    assert f"# {name}: the image/png of {len(large)} bytes" in command
    assert base64.b64encode(large).decode()[:100] not in command
    (tmp_path / name).write_bytes(large)
    again = run_curl(command, tmp_path)
    assert again["data"][0]["b64_json"] == sent["data"][0]["b64_json"]


def test_copy_as_curl_keeps_the_method_query_and_headers(client):
    client.delete("/v1/nope?x=1&y=%20two", headers={"X-Mock-Session": "it's mine", "X-Request-Id": "abc-1"})
    command = view_of(client, entries(client)[0])["curl"]
    words = shlex.split(command.replace("\\\n", " "), comments=True)
    assert words[:4] == ["curl", "-sS", "-X", "DELETE"]
    assert "http://testserver/v1/nope?x=1&y=%20two" in words
    assert "X-Mock-Session: it's mine" in words and "X-Request-Id: abc-1" in words


# --- the live stream, on a real port -----------------------------------------------------------------


@pytest.fixture(scope="module")
def live_mock():
    from conftest import LiveServer

    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture
def mock(live_mock):
    """The module's mock on a port, its journal and scenarios emptied."""
    return emptied(live_mock)


def post(mock, path, body, **headers) -> httpx.Response:
    return httpx.post(f"{mock.base_url}{path}", json=body, headers={**AUTH, **headers}, timeout=30)


def test_the_stream_says_hello_then_pushes_each_exchange_as_it_happens(mock):
    earlier = post(mock, MV, modelverse_body()).headers["x-request-id"]
    with Stream(mock.base_url) as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        name, hello = stream.event()
        assert name == "hello" and hello["page_cap"] == PAGE_CAP and hello["workers"] == 1
        assert hello["providers"] == ["dashscope", "modelverse", "powertokens"] and "rate_limit" in hello["faults"]
        name, snapshot = stream.event()
        assert snapshot["reset"] and [e["request_id"] for e in snapshot["exchanges"]] == [earlier]
        started = time.monotonic()
        later = post(mock, PT, powertokens_body(n=9)).headers["x-request-id"]
        found = stream.exchanges_until({later})
        assert time.monotonic() - started < 2
        assert found[later]["status"] == 400 and found[later]["error"]["rule"] == "maximum"


def seen_until_now(stream: Stream, mock) -> set[str]:
    """The request ids the stream sends from now until everything recorded so far has been
    looked at: a scenario added after the journal holds it all comes in a batch built after."""
    recorded = httpx.get(f"{mock.base_url}/__mock/requests").json()["requests"]
    httpx.post(f"{mock.base_url}/__mock/scenarios", json={"latency_ms": 0, "session": f"end-{len(recorded)}"})
    seen: set[str] = set()
    while True:
        name, batch = stream.event()
        if name == "batch":
            seen |= {e["request_id"] for e in batch["exchanges"]}
            if batch.get("scenarios", {}).get("total"):
                return seen


def wait_until_recorded(mock, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(httpx.get(f"{mock.base_url}/__mock/requests").json()["requests"]) < count:
        assert time.monotonic() < deadline, "the journal did not record the calls"


@pytest.mark.parametrize("params, expected", [
    ({}, {"pt", "mv-a", "bad"}),
    ({"provider": "powertokens"}, {"pt", "bad"}),
    ({"status": "4xx"}, {"bad"}),
    ({"status": "2xx"}, {"pt", "mv-a"}),
    ({"session": "a"}, {"mv-a"}),
    ({"q": "SKETCH"}, {"mv-a"}),
    ({"q": "greater than the maximum"}, {"bad"}),
    ({"status": "none"}, set()),
    ({"provider": "modelverse", "status": "4xx"}, set()),
])
def test_filters_choose_what_the_stream_sends(mock, params, expected):
    with Stream(mock.base_url, params) as stream:
        assert stream.event()[1]["filters"]["provider"] == params.get("provider")
        stream.event()
        post(mock, PT, powertokens_body(), **{"X-Request-Id": "pt"})
        post(mock, MV, modelverse_body(), **{"X-Mock-Session": "a", "X-Request-Id": "mv-a"})
        post(mock, PT, powertokens_body(n=9), **{"X-Request-Id": "bad"})
        wait_until_recorded(mock, 3)
        assert seen_until_now(stream, mock) == expected


@pytest.mark.parametrize("query", ["provider=openai", "status=200", "status=4XX", "q=" + "x" * 300,
                                   "session=%00", "q=%1b[31m"])
def test_bad_filters_are_a_400_that_names_them(client, query):
    response = client.get(f"/__mock/events?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_filter"
    assert query.partition("=")[0] in response.json()["error"]["message"]


def test_while_a_page_watches_a_large_image_leaves_a_thumbnail(mock):
    large = noise_png(300, seed=9)
    with Stream(mock.base_url) as stream:
        stream.event()
        stream.event()
        sent = post(mock, MV, modelverse_body(data_uri(large))).headers["x-request-id"]
        view = stream.exchanges_until({sent})[sent]
        [image] = view["inputs"]
        preview = view["previews"][image["sha256"]]
        assert preview["src"].startswith("data:image/jpeg;base64,") and not preview["whole"]
        assert max(decoded(preview["src"]).size) == THUMBNAIL_SIDE


def test_a_stopping_server_ends_the_stream_at_once(start_server):
    server = start_server()
    stream = Stream(server.base_url)
    stream.event()
    started = time.monotonic()
    server.stop()
    with pytest.raises((EOFError, httpx.TransportError)):
        while True:
            stream.event()
    assert time.monotonic() - started < 3
    stream.close()


def test_a_reconnecting_page_resumes_where_it_was(mock):
    with Stream(mock.base_url) as stream:
        stream.event()
        stream.event()
        first = post(mock, MV, modelverse_body()).headers["x-request-id"]
        stream.exchanges_until({first})
        resume_from = stream.last_id
    missed = post(mock, MV, modelverse_body()).headers["x-request-id"]
    with Stream(mock.base_url, headers={"Last-Event-ID": resume_from}) as again:
        assert again.event()[0] == "hello"
        name, batch = again.event()
        assert not batch["reset"] and [e["request_id"] for e in batch["exchanges"]] == [missed]
    # An id from another journal (a restart, another worker) starts afresh.
    with Stream(mock.base_url, headers={"Last-Event-ID": "1.abcd:1"}) as fresh:
        fresh.event()
        assert fresh.event()[1]["reset"]


def test_clearing_and_scenarios_are_pushed(mock):
    with Stream(mock.base_url) as stream:
        stream.event()
        stream.event()
        httpx.post(f"{mock.base_url}/__mock/scenarios", json={"fault": "server_error", "times": 3})
        batch = next(b for b in stream.batches(lambda _: True) if "scenarios" in b)
        [scenario] = batch["scenarios"]["shown"]
        assert (scenario["fault"], scenario["remaining"], scenario["times"]) == ("server_error", 3, 3)
        assert post(mock, MV, modelverse_body()).status_code == 500
        batch = list(stream.batches(lambda seen: bool(seen)))[-1]
        assert batch["scenarios"]["shown"][0]["remaining"] == 2
        httpx.delete(f"{mock.base_url}/__mock/requests")
        name, batch = stream.event()
        while not batch.get("cleared"):
            name, batch = stream.event()
        assert batch["exchanges"] == []


def test_a_burst_comes_in_batches_no_larger_than_a_page_holds(mock):
    with Stream(mock.base_url) as stream:
        stream.event()
        stream.event()
        total = PAGE_CAP + 300
        with httpx.Client(base_url=mock.base_url, headers=AUTH) as client:
            for _ in range(total):
                client.get("/nope")  # the cheapest exchange the journal records
        received, sizes = 0, []
        while received < total:
            name, batch = stream.event()
            if name == "batch":
                sizes.append(len(batch["exchanges"]))
                # Every exchange is sent, or counted as left out (skipped, or gone from the journal).
                received += len(batch["exchanges"]) + batch["skipped"] + batch["missed"]
        assert received == total and max(sizes) <= PAGE_CAP


def test_a_page_that_does_not_read_holds_up_nothing(mock):
    # A stream opened and never read: the mock goes on answering, and what it sends that page
    # waits in the socket's buffers and the journal, not in a queue of its own.
    with socket_stream(mock) as raw:
        started = time.monotonic()
        with httpx.Client(base_url=mock.base_url, headers=AUTH) as client:
            for _ in range(1500):
                assert client.get("/nope").status_code == 404
        assert time.monotonic() - started < 30
        raw.recv(1)  # the stream is still there
    with Stream(mock.base_url) as stream:
        stream.event()
        name, snapshot = stream.event()
        assert len(snapshot["exchanges"]) == PAGE_CAP and snapshot["skipped"] == 1000 - PAGE_CAP


class socket_stream:
    """A raw connection that asks for the stream and then reads nothing."""

    def __init__(self, mock) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", mock.port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.sendall(b"GET /__mock/events HTTP/1.1\r\nHost: x\r\n\r\n")

    def __enter__(self):
        return self.sock

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_no_one_watching_when_the_streams_are_gone():
    app = create_app(Settings())
    journal = app.state.journal
    messages = asgi_call(app, "/__mock/events")
    assert status_of(messages) == 200 and b"event: hello" in body_of(messages)
    assert journal._watchers == set()


# --- the browser tests run through their own target ---------------------------------------------------


def test_make_test_does_not_collect_the_browser_tests_and_make_test_browser_does():
    from conftest import ROOT

    def collected(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                               *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        return done.stdout

    # `make test` collects tests/ (here without its modules, which take seconds to import).
    assert "no tests collected" in collected("tests", "--ignore-glob=tests/test_*.py")
    assert "tests/browser/test_dashboard_browser.py::test_the_token_gate_holds" in collected("--browser",
                                                                                            "tests/browser")
    dry_run = subprocess.run(["make", "-n", "test-browser"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry_run.returncode == 0 and "--browser tests/browser" in dry_run.stdout

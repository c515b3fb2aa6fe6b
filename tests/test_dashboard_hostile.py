"""The dashboard's endpoints, fuzzed: whatever a request puts in the live stream's query
parameters, its Last-Event-ID, a cookie, a login header, a file name or an image link, the
answer is a 200 (the stream, the page, the file) or a clear 4xx with a JSON body, never a 5xx.

The live stream runs in process here (``asgi_call``: the client leaves as soon as the answer
starts, so the stream ends at once), as ``test_hostile.py`` does for the other endpoints."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import orjson
import pytest
from dashboard_support import asgi_call, body_of, status_of
from hypothesis import event, given
from hypothesis import strategies as st

from mockserver import Settings, create_app

TOKEN = "hostile-admin-token"
COOKIE = "qwen_mock_admin_80"


@pytest.fixture(scope="module")
def app():
    return create_app(Settings())


@pytest.fixture(scope="module")
def gated():
    return create_app(Settings(admin_token=TOKEN))


def session_cookie() -> str:
    from mockserver.controls.gate import AdminGate

    return AdminGate(TOKEN).session


odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "powertokens", "modelverse", "dashscope", "POWERTOKENS", "2xx", "4xx", "none", "5XX",
                     "6xx", "2", "x" * 257, "x" * 256, "\x00", "\x1b[31m", "\u202e", "\ud800", "%", "%FF", "é" * 300]),
)
optional = st.none() | odd_text
header_bytes = st.one_of(
    st.text(max_size=60).map(lambda text: text.encode("latin-1", "replace")),
    st.text(max_size=60).map(str.encode),
    st.binary(max_size=60),
    st.sampled_from([b"", b" ", b"Bearer", b"Bearer ", f"Bearer {TOKEN}".encode(), TOKEN.encode(),
                     b"\xff" * 30, b"x" * 20_000, b"1.abc:2", b"-1", b"99999999999999999999999"]),
)


def assert_json_error(messages, statuses=(400, 401, 403, 404)) -> dict:
    status = status_of(messages)
    assert status in statuses, (status, body_of(messages)[:300])
    error = orjson.loads(body_of(messages))["error"]
    assert error["message"] and error["code"]
    return error


def assert_stream_or_400(messages) -> None:
    status = status_of(messages)
    event(f"status {status}")
    if status == 200:
        assert body_of(messages).startswith(b"event: hello\n")
    else:
        assert assert_json_error(messages, (400,))["code"] == "invalid_filter"


def _query(**values) -> bytes:
    # Lone surrogates become bytes that are not UTF-8, as a client may send them.
    chosen = {name: value.encode("utf-8", "surrogatepass") for name, value in values.items() if value is not None}
    return urlencode(chosen, quote_via=quote).encode()


@given(provider=optional, status=optional, session=optional, q=optional)
def test_stream_filters(app, provider, status, session, q):
    assert_stream_or_400(asgi_call(app, "/__mock/events", query=_query(provider=provider, status=status,
                                                                        session=session, q=q)))


raw_queries = st.one_of(
    st.text(max_size=60).map(lambda text: quote(text, safe="=&;%+")),
    st.sampled_from(["q=%FF", "q=%", "q=%zz", "status=%00", "provider=&provider=openai", "session=" + "%41" * 300,
                     "&&&=&=", "q", "q=%C2%A0", "status=2xx&status=9xx", "q=" + "a" * 10_000]),
).map(str.encode)


@given(query=raw_queries)
def test_stream_raw_query_strings(app, query):
    assert_stream_or_400(asgi_call(app, "/__mock/events", query=query))


@given(last_event_id=header_bytes)
def test_stream_last_event_ids(app, last_event_id):
    messages = asgi_call(app, "/__mock/events", headers=[(b"last-event-id", last_event_id)])
    assert status_of(messages) == 200


GATED_PAGES = ["/__mock/", "/__mock/events", "/__mock/requests", "/__mock/scenarios", "/__mock/files/a.b.0.png"]


@given(path=st.sampled_from(GATED_PAGES), cookie=header_bytes, name=st.sampled_from([COOKIE, "other", ""]))
def test_any_cookie_on_a_gated_mock(gated, path, cookie, name):
    header = name.encode() + b"=" + cookie if name else cookie
    messages = asgi_call(gated, path, headers=[(b"cookie", header)])
    status = status_of(messages)
    event(f"status {status}")
    if path == "/__mock/":
        assert status == 401 and b'id="login"' in body_of(messages)
    else:
        assert_json_error(messages, (401, 403))


@given(path=st.sampled_from(GATED_PAGES + ["/__mock/session"]), value=header_bytes,
       name=st.sampled_from([b"authorization", b"x-mock-admin-token"]))
def test_any_admin_header(gated, path, value, name):
    method = "POST" if path == "/__mock/session" else "GET"
    messages = asgi_call(gated, path, method=method, headers=[(name, value)])
    status = status_of(messages)
    event(f"status {status}")
    if status in (200, 204):
        assert value.strip().endswith(TOKEN.encode())
    elif path == "/__mock/":
        assert status == 401
    elif path == "/__mock/files/a.b.0.png" and status == 404:
        assert_json_error(messages, (404,))  # let in, but no such image
    else:
        assert_json_error(messages, (401, 403))


@given(method=st.sampled_from(["DELETE", "POST"]), marker=st.none() | header_bytes)
def test_changes_with_the_cookie_need_the_dashboards_header(gated, method, marker):
    headers = [(b"cookie", f"{COOKIE}={session_cookie()}".encode())]
    if marker is not None:
        headers.append((b"x-mock-dashboard", marker))
    path = "/__mock/requests" if method == "DELETE" else "/__mock/scenarios"
    status = status_of(asgi_call(gated, path, method=method, headers=headers))
    if marker == b"1":
        assert status in (200, 400)  # a POST without a body is a 400 about the body
    else:
        assert status == 403


@given(name=st.text(max_size=40) | st.sampled_from(["dashboard.js", "index.html", "../app.py", "%2e%2e", ""]))
def test_static_file_names(app, name):
    messages = asgi_call(app, f"/__mock/static/{quote(name, safe='')}")
    if status_of(messages) != 200:
        assert_json_error(messages, (404,))


@given(token=st.text(max_size=80) | st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.text(max_size=20),
                                               st.text(max_size=20), st.text(max_size=5)))
def test_dashboard_image_links(app, token):
    messages = asgi_call(app, f"/__mock/files/{quote(token, safe='')}.png")
    if status_of(messages) == 200:
        assert body_of(messages).startswith(b"\x89PNG")
    else:
        assert_json_error(messages, (404,))

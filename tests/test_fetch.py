"""Image URLs: never fetched by default; fetched only from allowed hosts, within limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import make_client
from imaging import b64_png, image_bytes

MV = "/v1/images/generations"
PICTURE = image_bytes(400, 300, "PNG")


class ImageHost:
    """A small HTTP server on 127.0.0.1 that counts the requests it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append(self.path)
                if self.path == "/cat.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(PICTURE)))
                    self.end_headers()
                    self.wfile.write(PICTURE)
                elif self.path == "/moved.png":
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{host.port}/cat.png")
                    self.end_headers()
                elif self.path == "/huge.png":
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"\0" * (10 * 1024 * 1024 + 1))
                else:
                    self.send_response(404)
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def host() -> Iterator[ImageHost]:
    server = ImageHost()
    yield server
    server.server.shutdown()
    server.server.server_close()


def edit(client, url: str):
    body = {"model": "Qwen/Qwen-Image-Edit", "prompt": "sketch", "image": url, "response_format": "b64_json"}
    return client.post(MV, json=body)


def test_urls_are_never_fetched_by_default(host):
    with make_client() as client:
        response = edit(client, host.url("/cat.png"))
    assert response.status_code == 200, response.text
    assert b64_png(response.json()["data"][0]["b64_json"]).size == (1024, 1024)
    assert host.requests == []


def test_an_allowed_host_is_fetched_and_its_image_used(host):
    with make_client(fetch_hosts=frozenset({"127.0.0.1"})) as client:
        response = edit(client, host.url("/cat.png"))
    assert response.status_code == 200, response.text
    assert b64_png(response.json()["data"][0]["b64_json"]).size == (400, 300)
    assert host.requests == ["/cat.png"]


def test_a_host_off_the_list_is_not_fetched(host):
    with make_client(fetch_hosts=frozenset({"images.example.com"})) as client:
        response = edit(client, host.url("/cat.png"))
    assert response.status_code == 200, response.text
    assert b64_png(response.json()["data"][0]["b64_json"]).size == (1024, 1024)
    assert host.requests == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/missing.png", "answered 404"), ("/moved.png", "answered 302"), ("/huge.png", "larger than")],
)
def test_failed_fetches_are_400_naming_the_field(host, path, expected):
    with make_client(fetch_hosts=frozenset({"127.0.0.1"})) as client:
        response = edit(client, host.url(path))
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("image:") and expected in message
    assert host.requests == [path]  # a redirect is not followed


def test_an_unreachable_allowed_host_is_400():
    with make_client(fetch_hosts=frozenset({"127.0.0.1"})) as client:
        response = edit(client, "http://127.0.0.1:9/cat.png")  # the discard port: nothing listens
    assert response.status_code == 400, response.text
    assert "could not be fetched" in response.json()["error"]["message"]


# --- which hosts: host and port, refused at start-up when an entry can never match ------------

from mockserver.core.formats import AllowedHost  # noqa: E402


def test_an_entry_with_a_port_allows_that_port_only(host):
    with make_client(fetch_hosts=frozenset({f"127.0.0.1:{host.port}"})) as client:
        assert b64_png(edit(client, host.url("/cat.png")).json()["data"][0]["b64_json"]).size == (400, 300)
    with make_client(fetch_hosts=frozenset({f"127.0.0.1:{host.port + 1}"})) as client:
        # Another port of the same host is not allowed: the URL is not fetched (1024x1024, as offline).
        assert b64_png(edit(client, host.url("/cat.png")).json()["data"][0]["b64_json"]).size == (1024, 1024)
    assert host.requests == ["/cat.png"]


def test_an_entry_without_a_port_allows_every_port_of_its_host(host):
    with make_client(fetch_hosts=frozenset({"127.0.0.1"})) as client:
        assert edit(client, host.url("/cat.png")).status_code == 200
    assert host.requests == ["/cat.png"]


@pytest.mark.parametrize(("entry", "host_", "port"), [
    ("images.example.com", "images.example.com", None),
    ("Images.Example.COM:8443", "images.example.com", 8443),
    ("[::1]:8080", "::1", 8080),
    ("127.0.0.1:1", "127.0.0.1", 1),
])
def test_entries_are_host_or_host_and_port(entry, host_, port):
    assert AllowedHost.parse(entry) == AllowedHost(host_, port)


@pytest.mark.parametrize("entry", [
    "http://images.example.com", "images.example.com/path", "user@images.example.com", "127.0.0.1:99999",
    "127.0.0.1:0", "127.0.0.1:port", ":8080", "[::1", "host?x=1",
])
def test_entries_that_can_never_match_stop_the_mock_at_start_up(entry, tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "mockserver", "serve", "--fetch-hosts", entry],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "QWEN_MOCK_FETCH_HOSTS (--fetch-hosts)" in result.stderr and repr(entry) in result.stderr


@pytest.mark.parametrize("url", [
    "http://[::1/x", "http://127.0.0.1:99999/a.png", "http://127.0.0.1/a\tb.png", "http://127.0.0.1/\x00.png",
    "http://127.0.0.1/" + "a" * 70_000,
])
def test_urls_no_client_could_fetch_are_400_with_fetching_on(url):
    with make_client(fetch_hosts=frozenset({"127.0.0.1"})) as client:
        response = edit(client, url)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("image:")

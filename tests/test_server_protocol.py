"""What the server itself bounds, before the app sees a request: the size of a request head
(431), the time its head may take to arrive (408), and the time its body may (408 in the
provider's envelope from the endpoint, or the connection closed)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import jsonschema
import pytest
from conftest import ROOT
from schema_data import error_field

from mockserver.providers import PROVIDERS

READ_TIMEOUT = 1.0
HEAD_LIMIT = 8192
PATHS = {p.name: p.path for p in PROVIDERS}
ERROR_SCHEMAS = {path: json.loads((ROOT / "schemas" / name / "error.json").read_text()) for name, path in PATHS.items()}
CATALOGUES = {path: schema["x-errors"] for path, schema in ERROR_SCHEMAS.items()}
PROVIDER_OF = {path: name for name, path in PATHS.items()}


@pytest.fixture(scope="module")
def server():
    from conftest import LiveServer

    live = LiveServer({"QWEN_MOCK_READ_TIMEOUT": str(READ_TIMEOUT), "QWEN_MOCK_MAX_HEADER_BYTES": str(HEAD_LIMIT)})
    yield live
    live.stop()


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT * 10)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    while piece := sock.recv(65536):
        answer += piece
    return answer


def status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def head_of(size: int, path: str = "/healthz") -> bytes:
    """A GET whose request line and headers take about ``size`` bytes."""
    line = f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode()
    filler = b"X-Filler: " + b"f" * max(0, size - len(line) - 16) + b"\r\n"
    return line + filler + b"Connection: close\r\n\r\n"


def test_a_head_just_under_the_limit_is_served(server):
    with connect(server) as sock:
        sock.sendall(head_of(HEAD_LIMIT - 200))
        status, _ = status_and_body(read_answer(sock))
    assert status == 200


def test_a_head_over_the_limit_is_431_and_closed(server):
    with connect(server) as sock:
        sock.sendall(head_of(HEAD_LIMIT + 200))
        status, body = status_and_body(read_answer(sock))
    assert status == 431
    assert body["error"]["code"] == "request_header_fields_too_large"
    assert str(HEAD_LIMIT) in body["error"]["message"]


def test_a_long_request_line_counts_toward_the_head(server):
    with connect(server) as sock:
        sock.sendall(b"GET /" + b"a" * HEAD_LIMIT + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = status_and_body(read_answer(sock))
    assert status == 431


def test_a_head_dribbled_slowly_is_408_after_the_read_timeout(server):
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = b""
        for _ in range(int(READ_TIMEOUT * 10)):
            try:
                sock.sendall(b"X-Slow: y\r\n")
            except OSError:
                break
            time.sleep(0.3)  # a client that is slow on purpose, not a wait for the server
            sock.settimeout(0.01)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
        sock.settimeout(READ_TIMEOUT * 5)
        answer += read_answer(sock)
    elapsed = time.monotonic() - started
    status, body = status_and_body(answer)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 2


def test_a_connection_that_sends_nothing_is_closed(server):
    started = time.monotonic()
    with connect(server) as sock:
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert READ_TIMEOUT <= time.monotonic() - started < READ_TIMEOUT + 2


@pytest.mark.parametrize("path", list(PATHS.values()))
def test_a_body_dribbled_slowly_is_408_in_the_providers_envelope(server, path):
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
        answer = read_answer(sock)
    status, body = status_and_body(answer)
    assert status == CATALOGUES[path]["timeout"]["status"] == 408
    jsonschema.validate(body, ERROR_SCHEMAS[path])
    assert error_field(PROVIDER_OF[path], body, "code") == CATALOGUES[path]["timeout"]["code"]
    assert READ_TIMEOUT <= time.monotonic() - started < READ_TIMEOUT + 3


def test_a_body_nobody_reads_does_not_keep_its_connection(server):
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        answer = b""
        sock.settimeout(0.2)
        while time.monotonic() - started < READ_TIMEOUT * 6:
            try:
                sock.sendall(b"x")
                piece = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not piece:
                break
            answer += piece
    assert answer.startswith(b"HTTP/1.1 404")
    assert time.monotonic() - started < READ_TIMEOUT * 4


def test_keep_alive_connections_still_serve_several_requests(server):
    with httpx.Client(base_url=server.base_url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        time.sleep(READ_TIMEOUT * 1.5)  # idle between requests longer than the read timeout
        assert client.get("/healthz").status_code == 200


def test_a_stopping_server_answers_a_delayed_call_at_once(start_server):
    """SIGTERM while a call waits out a long latency: the call gets its answer (not a 500 from
    a cancelled task) and the server exits without waiting out the delay."""
    import signal
    import threading

    server = start_server({"QWEN_MOCK_SHUTDOWN_TIMEOUT": "30"})
    admin = httpx.Client(base_url=f"{server.base_url}/__mock")
    assert admin.post("/scenarios", json={"latency_ms": 600000, "times": 1}).status_code == 201
    body = {"model": "Qwen/Qwen-Image-Edit", "prompt": "p", "image": "https://example.com/a.png"}
    answers: list[httpx.Response] = []

    def call() -> None:
        answers.append(httpx.post(f"{server.base_url}/v1/images/generations", json=body, timeout=60,
                                  headers={"Authorization": "Bearer k"}))

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 10
    while admin.get("/scenarios").json()["scenarios"][0]["calls"] == 0:  # the call is being delayed
        assert time.monotonic() < deadline, "the call did not reach the mock"
        time.sleep(0.02)  # polling
    admin.close()
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    caller.join(timeout=20)
    server.process.wait(timeout=20)
    assert time.monotonic() - started < 5
    [answer] = answers
    assert answer.status_code == 200, answer.text

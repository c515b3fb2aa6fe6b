"""Hostile requests: builders shared by ``test_hostile.py`` and ``test_memory_bounds.py``, a
server-process harness that reads its memory from ``/proc``, and a script that measures
what each hostile request costs a server (peak RSS, time, status):

    python tests/hostile.py [--src DIR] [--only NAME ...]

``--src`` runs ``mockserver`` from another checkout (e.g. a worktree of an older commit);
each item gets a fresh server, so its peak RSS is its own.

Every builder here makes a request that is small to send (or bounded by the mock's own
limits) but was, at some point, expensive for the mock to answer.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MIB = 1024 * 1024
PT, MV = "/v1/images/edits", "/v1/images/generations"
AUTH = {"Authorization": "Bearer test-key"}
JSON_HEADERS = {**AUTH, "content-type": "application/json"}

# The mock's limits these requests run into (README, schemas, the intended behaviour).
BODY_LIMIT = 20 * MIB  # an edit request's body
HEAD_LIMIT = 64 * 1024  # a request's line and headers: past it, 431
ADMIN_BODY_LIMIT = MIB  # a /__mock/ request's body: past it, 413
JOURNAL_STRING_LIMIT = 16_384  # the journal keeps this much of a string or header value
MAX_OUTPUT_PIXELS = 2048 * 2048  # modelverse: an output follows its input, scaled down to this
MAX_ASPECT_RATIO = 8  # modelverse: ...and clamped to this aspect ratio first
MAX_INPUT_PIXELS = 50_000_000  # both providers: an input image's pixels
DEFAULT_URL_SECRET = "qwen-image-mock"  # the public default key that signs image links
CAPTION_LIMIT = 160  # the longest caption the mock itself puts in a link
PALETTE_LIMIT = 8  # the most input colours the mock itself puts in a link

ROOT = Path(__file__).resolve().parent.parent


# --- input images ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def png_declaring(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG of ``width`` x ``height``: a few KB however many pixels it has
    (50,000,000 x 1 is 6 KB, 7000 x 7000 is 6 KB)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def truncated_jpeg(width: int = 7000, height: int = 7000, keep: int = 1000) -> bytes:
    """A greyscale JPEG declaring ``width`` x ``height`` cut after ``keep`` bytes, with its
    end-of-image marker put back: libjpeg fills the missing scan with grey and Pillow
    loads it without complaint, so about 1 KB decodes to ``width * height`` pixels."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()[:keep] + b"\xff\xd9"


def data_uri(data: bytes, subtype: str = "png") -> str:
    return f"data:image/{subtype};base64,{base64.b64encode(data).decode()}"


def modelverse_body(image: str, prompt: str = "Convert to quick pencil sketch", **extra: Any) -> dict[str, Any]:
    return {"model": "Qwen/Qwen-Image-Edit", "prompt": prompt, "image": image, **extra}


def huge_input_request(kind: str) -> dict[str, Any]:
    """A modelverse request whose (small) input image has a huge pixel count, answered with
    the image inline (b64_json), so the output is drawn at once."""
    image = {
        "png-50000000x1": lambda: data_uri(png_declaring(50_000_000, 1)),
        "png-7000x7000": lambda: data_uri(png_declaring(7000, 7000)),
        "jpeg-truncated-7000x7000": lambda: data_uri(truncated_jpeg(), "jpeg"),
    }[kind]()
    return modelverse_body(image, response_format="b64_json", seed=1)


HUGE_INPUTS = ("png-50000000x1", "png-7000x7000", "jpeg-truncated-7000x7000")


def expected_output_size(width: int, height: int) -> tuple[int, int]:
    """modelverse's output for a ``width`` x ``height`` input, by the rule in its request
    schema's ``x-output-size``: the long side shortened to an aspect ratio of at most 8:1,
    then both sides scaled down (keeping that ratio) to at most 2048*2048 pixels. Rounding
    may differ by a pixel; the tests allow for that."""
    long, short = max(width, height), min(width, height)
    long = min(long, short * MAX_ASPECT_RATIO)
    scale = min(1.0, (MAX_OUTPUT_PIXELS / (long * short)) ** 0.5)
    long, short = max(1, int(long * scale)), max(1, int(short * scale))
    return (long, short) if width >= height else (short, long)


# --- large bodies ------------------------------------------------------------------------------


def long_prompt_body(total_bytes: int = BODY_LIMIT - 64 * 1024) -> bytes:
    """A valid modelverse request (a URL image, not fetched: cheap to answer) whose prompt
    makes the body exactly ``total_bytes`` long: just under the 20 MiB limit by default."""
    template = json.dumps(modelverse_body("https://example.com/a.png", prompt="@")).encode()
    prompt = b"sunset " * ((total_bytes - len(template)) // 7 + 1)
    body = template.replace(b'"@"', b'"' + prompt[: total_bytes - len(template) + 1] + b'"')
    assert len(body) == total_bytes, (len(body), total_bytes)
    return body


def nested_body(depth: int = 300, path: str = PT) -> bytes:
    """A valid edit request with an unknown field nested ``depth`` lists deep: accepted
    (unknown fields are ignored), and then in the journal."""
    if path == PT:
        body = json.loads((ROOT / "fixtures/seed/powertokens-request.json").read_text())
    else:
        body = modelverse_body("https://example.com/a.png")
    text = json.dumps(body)
    return (text[:-1] + ', "nested": ' + "[" * depth + "]" * depth + "}").encode()


def scenarios_body(total_bytes: int = 20 * MIB) -> bytes:
    """A JSON list of valid scenarios, about ``total_bytes`` long: over a million, each a
    Python object with its own random generator once parsed."""
    item = b'{"latency_ms":0}'
    count = max(1, total_bytes // (len(item) + 1))
    return b"[" + b",".join([item] * count) + b"]"


# --- forged image links ------------------------------------------------------------------------


def values_body(count: int = 9_000_000, item: bytes = b"0") -> bytes:
    """A modelverse request with an unknown list of ``count`` values: 18 MB of ``0,`` is nine
    million of them, each a Python object once parsed."""
    return b'{"model":"m","prompt":"p","x":[' + (item + b",") * (count - 1) + item + b"]}"


def replay_cassette(directory: Path, exchanges: int = 1, leaves: int = 0) -> str:
    """A cassette of ``exchanges`` recorded modelverse calls, each with ``leaves`` extra values
    in its request, written as ``qwen-image-mock record`` writes one (for ``--replay``)."""
    (directory / "exchanges").mkdir(parents=True)
    (directory / "cassette.json").write_text(json.dumps(
        {"format": "qwen-image-mock cassette", "version": 1, "upstream": "http://upstream.test"}))
    for number in range(1, exchanges + 1):
        exchange = {"provider": "modelverse",
                    "request": {"method": "POST", "path": MV,
                                "body": {"model": "m", "prompt": "p" if number == 1 else f"p{number}",
                                         **({"list": list(range(leaves))} if leaves else {})}},
                    "response": {"status": 200, "body": {"created": 1, "data": []}}}
        (directory / "exchanges" / f"{number:06d}-modelverse-200.json").write_text(json.dumps(exchange))
    return str(directory)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(payload: bytes, secret: str = DEFAULT_URL_SECRET) -> str:
    """``<payload>.<signature>`` as ``mockserver.links.LinkSigner`` makes it (keyed BLAKE2b of
    the payload, the key the sha256 of the secret): anyone can do this with the default key."""
    import hashlib

    key = hashlib.sha256(secret.encode()).digest()
    signature = hashlib.blake2b(payload, key=key, digest_size=16).digest()
    return f"{b64url(payload)}.{b64url(signature)}"


def spec_list(width: Any = 1, height: Any = 1, seed: Any = 0, index: Any = 0, fingerprint: Any = "0" * 16,
              caption: Any = "x", model: Any = "m", palette: Any = ()) -> list[Any]:
    """A render spec as a link carries it: ``[width, height, seed, index, fingerprint,
    caption, model, palette]``."""
    return [width, height, seed, index, fingerprint, caption, model, list(palette) if isinstance(palette, tuple) else palette]


def forged_payload(spec: Any, provider: Any = "powertokens", expires: Any = None, count: Any = 1) -> Any:
    """A link's payload: ``[spec, provider, expires, count]``; valid for an hour by default."""
    return [spec, provider, int(time.time()) + 3600 if expires is None else expires, count]


def forged_path(payload: Any, offset: str = "0", secret: str = DEFAULT_URL_SECRET) -> str:
    """``/files/<token>.png`` for any payload (JSON-encoded unless it is bytes already)."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    return f"/files/{sign(raw, secret)}.{offset}.png"


def caption_link(number: int, caption_chars: int = 47_000) -> str:
    """A distinct forged 1x1 link whose caption is ``caption_chars`` long: its URL stays
    under a 64 KiB request head, and each is one more key in the render cache."""
    caption = f"{number:08d}" + "c" * (caption_chars - 8)
    return forged_path(forged_payload(spec_list(caption=caption, seed=number)))


def raw_payload(width: str = "8", seed: str = "0", expires: str | None = None, count: str = "1") -> bytes:
    """A payload with numbers written out as given (JSON allows any number of digits; Python's
    ``int()`` of a string refuses more than 4300)."""
    expires = str(int(time.time()) + 3600) if expires is None else expires
    return f'[[{width}, 8, {seed}, 0, "0", "x", "m", []], "powertokens", {expires}, {count}]'.encode()


def valid_token(count: int = 1) -> str:
    """``<payload>.<signature>`` of a valid 8x8 powertokens link, without its offset."""
    return sign(json.dumps(forged_payload(spec_list(8, 8), count=count)).encode())


def file_paths_that_once_failed() -> dict[str, str]:
    """``/files/`` paths the mock once answered with 500: each must be a 404."""
    token = valid_token()
    return {
        "offset superscript two (%C2%B2)": f"/files/{token}.%C2%B2.png",
        "offset arabic-indic digit": f"/files/{token}.%D9%A1.png",
        "offset of 5000 digits": f"/files/{token}.{'9' * 5000}.png",
        "offset of 5000 zeros": f"/files/{token}.{'0' * 5000}.png",
        "count of 5000 digits": forged_path(raw_payload(count="9" * 5000)),
        "count a string": forged_path(forged_payload(spec_list(8, 8), count="many")),
        "expires a string": forged_path(forged_payload(spec_list(8, 8), expires="soon")),
    }


def forged_payloads() -> dict[str, Any]:
    """Payloads, signed with the public default key, that the mock never issues: each must
    be a 404 (never a 5xx, never an image drawn from it)."""
    now = int(time.time()) + 3600
    return {
        "width a string": forged_payload(spec_list("8", 8)),
        "width a float": forged_payload(spec_list(8.5, 8)),
        "width a list": forged_payload(spec_list([8], 8)),
        "width null": forged_payload(spec_list(None, 8)),
        "width true": forged_payload(spec_list(True, 8)),
        "seed a dict": forged_payload(spec_list(8, 8, seed={"a": 1})),
        "index a string": forged_payload(spec_list(8, 8, index="0")),
        "fingerprint a number": forged_payload(spec_list(8, 8, fingerprint=7)),
        "caption a list": forged_payload(spec_list(8, 8, caption=["x"])),
        "model null": forged_payload(spec_list(8, 8, model=None)),
        "negative width and height": forged_payload(spec_list(-5, -5)),
        "negative width": forged_payload(spec_list(-5, 5)),
        "zero height": forged_payload(spec_list(8, 0)),
        "huge width and height": forged_payload(spec_list(10**6, 10**6)),
        "50000000 x 1": forged_payload(spec_list(50_000_000, 1)),
        "width of 2**64": forged_payload(spec_list(2**64, 1)),
        "width of 5000 digits": raw_payload(width="9" * 5000),
        "seed of 5000 digits": raw_payload(seed="9" * 5000),
        "expires of 5000 digits": raw_payload(expires="9" * 5000),
        "palette not a list": forged_payload(spec_list(8, 8, palette="#ffffff")),
        "palette entry not hex": forged_payload(spec_list(8, 8, palette=("#zzzzzz",))),
        "palette entry short": forged_payload(spec_list(8, 8, palette=("#fff",))),
        "palette entry empty": forged_payload(spec_list(8, 8, palette=("",))),
        "palette entry a number": forged_payload(spec_list(8, 8, palette=(16777215,))),
        "palette entry null": forged_payload(spec_list(8, 8, palette=(None,))),
        "palette entry non-ASCII digits": forged_payload(spec_list(8, 8, palette=("#\u0661\u0662\u0663\u0664\u0665\u0666",))),
        "300 palette colours": forged_payload(spec_list(8, 8, palette=tuple(f"#{i:06x}" for i in range(300)))),
        "caption of 45,000 characters": forged_payload(spec_list(8, 8, caption="c" * 45_000)),
        "caption of 30,000 characters": forged_payload(spec_list(8, 8, caption="c" * 30_000)),
        "model of 30,000 characters": forged_payload(spec_list(8, 8, model="m" * 30_000)),
        "spec too short": forged_payload([8, 8, 0]),
        "spec a dict": forged_payload({"width": 8}),
        "unknown provider": forged_payload(spec_list(8, 8), provider="elsewhere"),
        "provider a list": forged_payload(spec_list(8, 8), provider=["powertokens"]),
        "count zero": forged_payload(spec_list(8, 8), count=0),
        "count negative": forged_payload(spec_list(8, 8), count=-1),
        "payload a dict": {"spec": spec_list(8, 8), "expires": now},
        "payload too long": [*forged_payload(spec_list(8, 8)), "extra"],
        "payload null": None,
        "payload not JSON": b"\xff\xfe not json",
        "payload NaN": b'[[8, 8, 0, 0, "0", "x", "m", []], "powertokens", NaN, 1]',
    }


def fetch_urls_that_once_failed() -> dict[str, str]:
    """Image URLs the mock once answered with 500 when --fetch-hosts was on: each must be a
    400 naming the field."""
    return {
        "unclosed IPv6 bracket": "http://[::1/x.png",
        "IPv6 bracket in the host": "http://127.0.0.1[/x.png",
        "control character": "http://127.0.0.1/a\x01b.png",
        "tab": "http://127.0.0.1/a\tb.png",
        "newline": "http://127.0.0.1/a\nb.png",
        "NUL": "http://127.0.0.1/a\x00b.png",
        "DEL": "http://127.0.0.1/a\x7fb.png",
        "space in the host": "http://127.0.0.1 /a.png",
        "port not a number": "http://127.0.0.1:port/a.png",
        "port too large": "http://127.0.0.1:99999/a.png",
        "longer than 64 KiB": "http://127.0.0.1/" + "a" * (64 * 1024 + 1),
        "non-ASCII host": "http://127.0.0.\u0661/a.png",
        "empty host": "http:///a.png",
    }


# --- talking HTTP without a client library --------------------------------------------------------


@dataclass
class RawAnswer:
    status: int | None  # None: the connection closed (or timed out) without an answer
    headers: dict[str, str]
    body: bytes
    seconds: float
    error: str | None = None


def raw_request(port: int, head: bytes, body: Iterable[bytes] | bytes = b"", timeout: float = 30.0,
                piece: int = 64 * 1024) -> RawAnswer:
    """Send ``head`` then ``body`` in pieces, stopping as soon as the server answers (a server
    refusing a huge head answers before it has all of it), and read the answer until the
    connection closes or the declared body is in. Never raises for the network."""
    started = time.monotonic()
    data = b"".join(body) if not isinstance(body, bytes) else body
    payload = head + data
    received = b""
    error = None
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for start in range(0, len(payload), piece):
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered (or closed): stop sending
                sock.sendall(payload[start : start + piece])
        except OSError as exc:
            error = f"send: {type(exc).__name__}"
        try:
            deadline = started + timeout
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                received += chunk
                head_end = received.find(b"\r\n\r\n")
                if head_end >= 0:
                    length = _content_length(received[:head_end])
                    if length is not None and len(received) - head_end - 4 >= length:
                        break
        except OSError as exc:
            error = (error + "; " if error else "") + f"recv: {type(exc).__name__}"
    seconds = time.monotonic() - started
    if not received.startswith(b"HTTP/"):
        return RawAnswer(None, {}, received, seconds, error)
    head_part, _, body_part = received.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(lines[0].split()[1]), headers, body_part, seconds, error)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def big_header_head(path: str = "/nope", header_bytes: int = 10 * MIB, port: int = 0) -> bytes:
    """``GET <path>`` with one header ``header_bytes`` long."""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            f"X-Hostile: ").encode() + b"h" * header_bytes + b"\r\n\r\n"


def post_head(path: str, port: int, length: int, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer test-key\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n{extra}\r\n").encode()


# --- a server in its own process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM (peak resident memory) and VmRSS of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            values[name] = int(rest.split()[0]) * 1024
    return values


class ServerProcess:
    """``python -m mockserver serve`` on a free port, from ``src`` (default: this checkout
    as installed), with ``QWEN_MOCK_*`` settings from ``env``."""

    def __init__(self, env: dict[str, str] | None = None, src: str | Path | None = None,
                 args: Iterable[str] = (), startup_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, **(env or {})}
        if src is not None:
            environ["PYTHONPATH"] = str(src)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mockserver", "serve", "--port", str(self.port), "--log-level", "critical", *args],
            env=environ, cwd=str(src) if src is not None else None,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._wait_until_ready(startup_timeout)
        self.idle = proc_status(self.pid)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if len(self._stderr) < 200:
                self._stderr.append(line[:2000])

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mock server exited with {self.process.returncode}: {self.stderr}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # polling for readiness, not waiting a fixed time
        self.kill()
        raise RuntimeError("mock server did not become ready")

    def memory(self) -> dict[str, int]:
        return proc_status(self.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float) -> float | None:
        """SIGTERM; the seconds it took to exit, or None if it had not within ``timeout``
        (then it is killed)."""
        started = time.monotonic()
        if self.process.poll() is not None:
            return 0.0
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# --- slow upstream, for --fetch-hosts -----------------------------------------------------------


class DripServer:
    """An HTTP server on 127.0.0.1 answering every request with 200, a Content-Length of a
    megabyte, and then one byte every ``interval`` seconds for at most ``for_seconds``:
    never silent for long enough to trip a per-read timeout."""

    def __init__(self, interval: float = 2.0, for_seconds: float = 60.0) -> None:
        self.interval, self.for_seconds = interval, for_seconds
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.connections: list[float] = []  # how long each connection was held open
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1048576\r\n\r\n")
                while time.monotonic() - started < self.for_seconds and not self.stopped.wait(self.interval):
                    conn.sendall(b"\x00")
            except OSError:
                pass
        self.connections.append(time.monotonic() - started)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


# --- the measurement script ----------------------------------------------------------------------


@dataclass
class Figure:
    item: str
    request: str
    statuses: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    idle_hwm: int = 0
    hwm: int = 0
    rss_after: int = 0
    note: str = ""

    def row(self) -> str:
        counted: dict[str, int] = {}
        for status in self.statuses:
            counted[str(status)] = counted.get(str(status), 0) + 1
        statuses = ", ".join(f"{n}x {s}" if n > 1 else s for s, n in counted.items())
        return (f"| {self.item} | {self.request} | {statuses} | {self.seconds:.1f} s | "
                f"{self.idle_hwm / MIB:.0f} -> {self.hwm / MIB:.0f} MB | {self.rss_after / MIB:.0f} MB | {self.note} |")


def _timed(figure: Figure, server: ServerProcess, action) -> None:
    started = time.monotonic()
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - a measurement records what happened
        figure.statuses.append(type(exc).__name__)
    figure.seconds = time.monotonic() - started
    if server.alive():
        memory = server.memory()
        figure.hwm, figure.rss_after = memory["VmHWM"], memory["VmRSS"]
    else:
        figure.note += f" server died ({server.process.returncode})"


def _post(http: httpx.Client, figure: Figure, path: str, **kwargs: Any) -> httpx.Response:
    response = http.post(path, **kwargs)
    figure.statuses.append(response.status_code)
    return response


def measure_huge_input(src: str | None, kind: str) -> Figure:
    figure = Figure("1 output size", f"modelverse b64_json, input {kind}")
    with ServerProcess(src=src) as server, httpx.Client(base_url=server.base_url, timeout=120) as http:
        figure.idle_hwm = server.idle["VmHWM"]

        def run() -> None:
            response = _post(http, figure, MV, json=huge_input_request(kind), headers=AUTH)
            if response.status_code == 200:
                from PIL import Image

                payload = response.json()["data"][0]["b64_json"].rpartition("base64,")[2]
                image = Image.open(io.BytesIO(base64.b64decode(payload)))
                figure.note = f"output {image.width}x{image.height}, response {len(response.content) / MIB:.1f} MB"

        _timed(figure, server, run)
    return figure


def measure_forged_captions(src: str | None, count: int = 2686) -> Figure:
    figure = Figure("2 render cache", f"{count} forged 1x1 links, 47,000-char captions (journal off)")
    with ServerProcess(src=src, env={"QWEN_MOCK_JOURNAL_CAP": "0"}) as server:
        figure.idle_hwm = server.idle["VmHWM"]

        def run() -> None:
            for number in range(count):
                # Over a plain socket: httpx takes ~10 ms to parse a 63 KB URL.
                head = f"GET {caption_link(number)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                figure.statuses.append(raw_request(server.port, head.encode()).status)

        _timed(figure, server, run)
    return figure


def measure_journal_prompts(src: str | None, count: int = 40) -> Figure:
    body = long_prompt_body()
    figure = Figure("3 journal", f"{count} modelverse requests, {len(body) / MIB:.1f} MiB prompts")
    with ServerProcess(src=src) as server, httpx.Client(base_url=server.base_url, timeout=60) as http:
        figure.idle_hwm = server.idle["VmHWM"]

        def run() -> None:
            for _ in range(count):
                _post(http, figure, MV, content=body, headers=JSON_HEADERS)
            response = http.get("/__mock/requests")
            figure.statuses.append(f"journal {response.status_code}")
            figure.note = f"GET /__mock/requests: {len(response.content) / MIB:.0f} MB"

        _timed(figure, server, run)
    return figure


def measure_journal_headers(src: str | None, count: int = 41) -> Figure:
    figure = Figure("3 journal", f"{count} GET /nope with a 10 MiB header")
    with ServerProcess(src=src) as server:
        figure.idle_hwm = server.idle["VmHWM"]

        def run() -> None:
            for _ in range(count):
                figure.statuses.append(raw_request(server.port, big_header_head(port=server.port)).status)

        _timed(figure, server, run)
    return figure


def measure_journal_nesting(src: str | None) -> Figure:
    figure = Figure("3 journal", "powertokens body nested 300 deep, then GET /__mock/requests")
    with ServerProcess(src=src) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        figure.idle_hwm = server.idle["VmHWM"]

        def run() -> None:
            _post(http, figure, PT, content=nested_body(300), headers=JSON_HEADERS)
            figure.statuses.append(f"journal {http.get('/__mock/requests').status_code}")

        _timed(figure, server, run)
    return figure


class HealthWatch:
    """Polls ``/healthz`` from a thread while something else runs: the longest the server
    took to answer it (one still waiting counts for as long as it has waited) shows whether
    that something froze the event loop."""

    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._longest = 0.0
        self._waiting_since: float | None = None
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def longest(self) -> float:
        since = self._waiting_since
        return max(self._longest, 0.0 if since is None else time.monotonic() - since)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as http:
            while not self._stop.is_set():
                self._waiting_since = started = time.monotonic()
                try:
                    http.get("/healthz")
                except httpx.HTTPError:
                    self.failures += 1
                self._longest = max(self._longest, time.monotonic() - started)
                self._waiting_since = None
                self._stop.wait(0.05)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)  # a poll stuck on a frozen server is left to its timeout


def measure_scenarios(src: str | None) -> Figure:
    body = scenarios_body()
    figure = Figure("4 scenarios", f"one POST /__mock/scenarios of {len(body) / MIB:.0f} MiB ({body.count(b'{')} scenarios)")
    with ServerProcess(src=src) as server, httpx.Client(base_url=server.base_url, timeout=300) as http:
        figure.idle_hwm = server.idle["VmHWM"]

        def run() -> None:
            with HealthWatch(server.base_url) as watch:
                _post(http, figure, "/__mock/scenarios", content=body)
            figure.note = f"longest GET /healthz meanwhile: {watch.longest:.1f} s"

        _timed(figure, server, run)
    return figure


def measure_drip_fetch(src: str | None, for_seconds: float = 40.0) -> Figure:
    figure = Figure("5 fetch time", f"--fetch-hosts 127.0.0.1, host sends a byte every 2 s for {for_seconds:.0f} s")
    drip = DripServer(interval=2.0, for_seconds=for_seconds)
    try:
        with ServerProcess(src=src, env={"QWEN_MOCK_FETCH_HOSTS": "127.0.0.1"}) as server, \
                httpx.Client(base_url=server.base_url, timeout=for_seconds + 30) as http:
            figure.idle_hwm = server.idle["VmHWM"]
            body = modelverse_body(f"http://127.0.0.1:{drip.port}/slow.png")
            _timed(figure, server, lambda: _post(http, figure, MV, json=body, headers=AUTH))
    finally:
        drip.close()
    return figure


def _wait_for_calls(http: httpx.Client, calls: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http.get("/__mock/scenarios").json()["scenarios"][0]["calls"] >= calls:
            return True
        time.sleep(0.05)
    return False


def _journal_has(http: httpx.Client, count: int, timeout: float) -> float | None:
    """Seconds until the journal holds ``count`` entries (it records a request when it
    ends), or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if len(http.get("/__mock/requests").json()["requests"]) >= count:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def _tcp_queues(port: int, peer_port: int) -> tuple[int, int] | None:
    """(send queue, receive queue) of the server's end of the connection from ``peer_port``
    to ``port`` on 127.0.0.1, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == peer_port:
            tx, rx = (int(q, 16) for q in queues.split(":"))
            return tx, rx
    return None


def wait_until_reading_stops(port: int, sock: socket.socket, settle: float = 0.5, timeout: float = 30) -> int | None:
    """Wait until the server stops reading what was sent on ``sock`` (what is queued on either
    side unchanged for ``settle`` seconds); the bytes it left unread, or None on timeout."""
    import fcntl
    import struct
    import termios

    peer_port = sock.getsockname()[1]
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        unsent = struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        queues = _tcp_queues(port, peer_port)
        state = None if queues is None else (unsent, queues[1])
        if state != last:
            last, since = state, time.monotonic()
        elif state is not None and time.monotonic() - since >= settle:
            return sum(state)
        time.sleep(0.02)
    return None


PROBE_SCENARIO = {"latency_ms": 0, "session": "probe"}  # counts calls; Prefer's latency wins


def measure_latency_after_disconnect(src: str | None, latency_ms: int = 30_000) -> Figure:
    """The client sends a body over the limit with ``Prefer: latency`` and leaves."""
    figure = Figure("6 latency", f"Prefer: latency={latency_ms}, 21 of a declared 42 MiB sent, client "
                                 "gone, then SIGTERM")
    with ServerProcess(src=src) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        figure.idle_hwm = server.idle["VmHWM"]
        http.post("/__mock/scenarios", json=PROBE_SCENARIO)

        def run() -> None:
            # More than the limit, but not all that was declared: the mock stops reading.
            size = BODY_LIMIT + MIB
            head = post_head(MV, server.port, 2 * size, f"Prefer: latency={latency_ms}\r\nX-Mock-Session: probe\r\n")
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(head + b" " * size)
                _wait_for_calls(http, 1)
                wait_until_reading_stops(server.port, sock)
            ended = _journal_has(http, 1, 5)
            figure.statuses.append("request ended" if ended is not None else "still sleeping 5 s after")
            exited = server.terminate(timeout=latency_ms / 1000 + 15)
            figure.statuses.append("exit" if exited is not None else "no exit")
            figure.note = (f"request ended {ended:.2f} s after the client left; " if ended is not None else "") + (
                f"SIGTERM to exit: {exited:.1f} s" if exited is not None else "did not exit")

        _timed(figure, server, run)
        figure.hwm = figure.hwm or figure.idle_hwm
    return figure


def measure_latency_at_shutdown(src: str | None, latency_ms: int = 30_000) -> Figure:
    """A client waits on ``Prefer: latency``; the server gets SIGTERM."""
    figure = Figure("6 latency", f"Prefer: latency={latency_ms}, client waiting, SIGTERM")
    with ServerProcess(src=src) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        figure.idle_hwm = server.idle["VmHWM"]
        http.post("/__mock/scenarios", json=PROBE_SCENARIO)

        def run() -> None:
            body = json.dumps(modelverse_body("https://example.com/a.png")).encode()
            head = post_head(MV, server.port, len(body), f"Prefer: latency={latency_ms}\r\nX-Mock-Session: probe\r\n")
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(head + body)
                _wait_for_calls(http, 1)
                exited = server.terminate(timeout=latency_ms / 1000 + 15)
                sock.settimeout(1)
                try:
                    answer = sock.recv(65536)
                except OSError as exc:
                    answer = type(exc).__name__.encode()
            figure.statuses.append(answer.split(b"\r\n")[0].decode("latin-1") or "closed")
            figure.note = f"SIGTERM to exit: {exited:.1f} s" if exited is not None else "did not exit"

        _timed(figure, server, run)
        figure.hwm = figure.hwm or figure.idle_hwm
    return figure


def measure_dribblers(src: str | None, count: int = 150, watch_seconds: float = 30.0) -> Figure:
    figure = Figure("7 slow bodies", f"{count} connections declaring 1000 bytes, sending 1 byte/s, watched {watch_seconds:.0f} s")
    with ServerProcess(src=src) as server:
        figure.idle_hwm = server.idle["VmHWM"]

        def run() -> None:
            socks = []
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(post_head(MV, server.port, 1000))
                socks.append(sock)
            started = time.monotonic()
            open_socks = list(socks)
            while time.monotonic() - started < watch_seconds and open_socks:
                still = []
                for sock in open_socks:
                    try:
                        readable = select.select([sock], [], [], 0)[0]
                        if readable and not sock.recv(65536):
                            raise ConnectionError
                        sock.sendall(b" ")
                        still.append(sock)
                    except OSError:
                        sock.close()
                open_socks = still
                time.sleep(1)
            figure.statuses.append(f"{len(open_socks)}/{count} open after {time.monotonic() - started:.0f} s")
            for sock in socks:
                sock.close()

        _timed(figure, server, run)
    return figure


def measure_once_500s(src: str | None) -> list[Figure]:
    """The requests the issue found answered with 500, each on one server."""
    figures = []
    # A connection per request: uvicorn drops a connection after a 500, and a pooled one
    # would then fail the next request.
    with ServerProcess(src=src) as server, \
            httpx.Client(base_url=server.base_url, timeout=30, headers={"connection": "close"}) as http:
        for name, path in file_paths_that_once_failed().items():
            figure = Figure("500s", f"GET /files/: {name}", idle_hwm=server.idle["VmHWM"])
            _timed(figure, server, lambda: figure.statuses.append(http.get(path).status_code))
            figures.append(figure)
        for name, payload in forged_payloads().items():
            figure = Figure("500s", f"forged link: {name}", idle_hwm=server.idle["VmHWM"])
            _timed(figure, server, lambda: figure.statuses.append(http.get(forged_path(payload)).status_code))
            figures.append(figure)
        for limit in ("%C2%B2", "9" * 5000, "-1", "1e3"):
            figure = Figure("500s", f"GET /__mock/requests?limit={limit[:12]}{'...' if len(limit) > 12 else ''}",
                            idle_hwm=server.idle["VmHWM"])
            _timed(figure, server, lambda: figure.statuses.append(http.get(f"/__mock/requests?limit={limit}").status_code))
            figures.append(figure)
    with ServerProcess(src=src, env={"QWEN_MOCK_FETCH_HOSTS": "127.0.0.1,localhost"}) as server, \
            httpx.Client(base_url=server.base_url, timeout=30, headers={"connection": "close"}) as http:
        for name, url in fetch_urls_that_once_failed().items():
            figure = Figure("500s", f"--fetch-hosts, image URL: {name}", idle_hwm=server.idle["VmHWM"])
            body = modelverse_body(url)
            _timed(figure, server, lambda: _post(http, figure, MV, json=body, headers=AUTH))
            figures.append(figure)
    return figures


def measure_values(src: str | None, replay: str = "") -> Figure:
    """An 18 MB body of nine million values, to a plain mock or one replaying a cassette."""
    import tempfile

    body = values_body()
    with tempfile.TemporaryDirectory() as scratch:
        args = [] if not replay else ["--replay", replay_cassette(Path(scratch) / "cassette")]
        args += ["--replay-strict"] if replay == "strict" else []
        figure = Figure("8 body values", f"modelverse, {len(body) / MIB:.0f} MiB of '0,'"
                        + (f" (--replay{'-strict' if replay == 'strict' else ''})" if replay else ""))
        with ServerProcess(src=src, args=args) as server, HealthWatch(server.base_url) as watch, \
                httpx.Client(base_url=server.base_url, timeout=300) as http:
            figure.idle_hwm = server.idle["VmHWM"]
            _timed(figure, server, lambda: _post(http, figure, MV, content=body, headers=JSON_HEADERS))
            figure.note = f"/healthz waited {watch.longest:.1f} s meanwhile"
    return figure


def measure_replay_cassette(src: str | None, exchanges: int = 20_000, leaves: int = 200) -> Figure:
    """Start-up on a cassette of 20,000 small exchanges, then a strict miss."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        cassette = replay_cassette(Path(scratch) / "cassette", exchanges, leaves)
        figure = Figure("9 replay", f"--replay-strict, {exchanges:,} exchanges of {leaves} values, then a miss")
        started = time.monotonic()
        with ServerProcess(src=src, args=["--replay", cassette, "--replay-strict"], startup_timeout=300) as server, \
                httpx.Client(base_url=server.base_url, timeout=300) as http:
            startup = time.monotonic() - started
            figure.idle_hwm = server.idle["VmHWM"]
            body = {"model": "m", "prompt": "zz", "list": list(range(leaves + 100))}
            _timed(figure, server, lambda: _post(http, figure, MV, json=body, headers=AUTH))
            figure.note = f"start-up {startup:.1f} s (listening, RSS at idle includes the cassette)"
    return figure


MEASUREMENTS = {
    "png-50000000x1": lambda src: measure_huge_input(src, "png-50000000x1"),
    "png-7000x7000": lambda src: measure_huge_input(src, "png-7000x7000"),
    "jpeg-truncated": lambda src: measure_huge_input(src, "jpeg-truncated-7000x7000"),
    "captions": measure_forged_captions,
    "prompts": measure_journal_prompts,
    "headers": measure_journal_headers,
    "nesting": measure_journal_nesting,
    "scenarios": measure_scenarios,
    "drip": measure_drip_fetch,
    "latency-gone": measure_latency_after_disconnect,
    "latency-shutdown": measure_latency_at_shutdown,
    "dribblers": measure_dribblers,
    "500s": measure_once_500s,
    "values": measure_values,
    "values-replay": lambda src: measure_values(src, "loose"),
    "values-replay-strict": lambda src: measure_values(src, "strict"),
    "replay-cassette": measure_replay_cassette,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="directory holding the mockserver package to run")
    parser.add_argument("--only", nargs="*", choices=sorted(MEASUREMENTS), help="measure only these")
    args = parser.parse_args(argv)
    if args.src:
        probe = subprocess.run([sys.executable, "-c", "import mockserver; print(mockserver.__file__)"],
                               env={**os.environ, "PYTHONPATH": args.src}, cwd=args.src,
                               capture_output=True, text=True, check=True)
        print(f"mockserver from {probe.stdout.strip()}", flush=True)
    print("| item | request | status | time | peak RSS (VmHWM idle -> peak) | VmRSS after | note |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name in args.only or MEASUREMENTS:
        figures = MEASUREMENTS[name](args.src)
        for figure in figures if isinstance(figures, list) else [figures]:
            print(figure.row(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``qwen-image-mock record``: a recording proxy in front of a real provider.

Every request under a provider's paths is forwarded to the upstream, at the same path, with
the client's own headers (its key included) and body; the upstream's answer goes back to the
client unchanged (status, headers, bytes). Each call to an edit endpoint is also written to
the cassette (``cassette.py``) in its canonical form (``canonical.py``): the request without
its key, input images stored once by sha256; the answer's status, the headers that matter
and its body, each output image fetched from the upstream's link at once (provider links
expire in a day or a week) or decoded from base64, stored once by sha256.

Safe against a real provider: no key is written or logged (the request's credentials are
kept only as their form, ``bearer``/``none``/``malformed``, and searched for and redacted
in what is recorded); nothing is retried; no proxy settings are read from the environment;
redirects are not followed. Bounded where the resource is spent: the client's body
(``--max-body-bytes``, 413 past it, not forwarded), the upstream's answer (read up to
``--cassette-max-exchange-bytes``; past it relayed as it comes and not recorded), each
image download (the room left in the exchange, and ``--download-timeout``), the whole
exchange (``--upstream-timeout``), and the cassette (``--cassette-max-bytes``; past it
exchanges are relayed, not recorded, with a warning).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
import orjson
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from ..core.errors import ApiError
from ..core.settings import Settings
from ..http.body import read_body
from ..http.request_id import request_id_for
from ..http.responses import error_parts
from ..providers import PROVIDERS
from ..providers.api import Provider
from .canonical import (
    Canonicaliser,
    answer_links,
    credentials_form,
    scrub,
    scrubbed_query,
    secrets_in,
    sha256,
    vary_headers,
)
from .cassette import CassetteWriter, TooLarge, answer_header_kept
from .shapes import Shape

LOGGER = logging.getLogger("qwen_image_mock.record")
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
                        b"upgrade", b"proxy-authorization", b"proxy-authenticate"})
# No provider answers more than six images; a drifted or broken answer with thousands of
# links is recorded with the rest marked unavailable, not downloaded one by one.
MAX_DOWNLOADS = 16
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"accept-encoding", b"expect"}


def check_upstream(url: str) -> str:
    """The upstream's base URL, ``http(s)://host[:port][/prefix]``, without a trailing slash;
    ``ValueError`` for anything else (credentials in it included: keys go in headers)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as error:
        raise ValueError(f"--upstream {url!r} is not a URL: {error}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--upstream must be an http(s) URL with a host, such as https://api.example.com, not {url!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("--upstream must carry no credentials, query or fragment: the client's own headers "
                         "carry its key")
    return url.strip().rstrip("/")


def owner(providers: list[Provider], path: str) -> Provider | None:
    """The provider whose paths ``path`` is among (its endpoint, else the first whose mount it
    falls under)."""
    return next((p for p in providers if path.startswith(p.path)), None) or next(
        (p for p in providers if path.startswith(p.mount)), None)


class RecordingProxy:
    """The recording proxy, an ASGI app."""

    def __init__(self, settings: Settings, upstream: str, cassette: str, *, upstream_timeout: float = 300.0,
                 download_timeout: float = 60.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.upstream = check_upstream(upstream)
        self.providers = [provider_class(settings) for provider_class in PROVIDERS]
        self.shapes = {provider.path: Shape.of(provider) for provider in self.providers}
        self.writer = CassetteWriter(cassette, self.upstream, max_bytes=settings.cassette_max_bytes,
                                     max_exchange_bytes=settings.cassette_max_exchange_bytes)
        self.upstream_timeout = upstream_timeout
        self.download_timeout = download_timeout
        self.transport = transport
        self._client: httpx.AsyncClient | None = None
        self._lock: asyncio.Lock | None = None
        self.recorded = 0
        self.not_recorded = 0

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self.transport or httpx.AsyncHTTPTransport(retries=0), trust_env=False,
                follow_redirects=False, timeout=httpx.Timeout(self.upstream_timeout, connect=min(30.0,
                                                                                            self.upstream_timeout)))
            for name in list(self._client.headers):  # forward the client's headers, not httpx's
                del self._client.headers[name]
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/healthz" and scope["method"] in ("GET", "HEAD"):
            await _send(send, 200, [(b"content-type", b"application/json")], b'{"status":"ok"}')
            return
        provider = owner(self.providers, scope["path"])
        if provider is None:
            body = (b'{"error":{"message":"The recording proxy forwards the providers\' paths only.",'
                    b'"type":"invalid_request_error","param":null,"code":"not_found"}}')
            await _send(send, 404, [(b"content-type", b"application/json")], body)
            return
        await self.relay(scope, receive, send, provider)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def relay(self, scope: Scope, receive: Receive, send: Send, provider: Provider) -> None:
        headers = Headers(scope=scope)
        try:
            raw = await read_body(scope, receive, headers, self.settings.max_body_bytes)
        except ApiError as error:
            body, status, error_headers, _ = error_parts(provider, error, request_id_for(scope))
            await _send(send, status, [(b"content-type", b"application/json")]
                        + [(k.encode(), v.encode()) for k, v in error_headers.items()], body)
            return
        target = self.upstream + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        forwarded = [(name, value) for name, value in scope["headers"] if name not in NOT_FORWARDED]
        forwarded.append((b"accept-encoding", b"identity"))
        recordable = scope["method"] == "POST" and scope["path"] == provider.path
        cap = self.settings.cassette_max_exchange_bytes
        try:
            with anyio.fail_after(self.upstream_timeout):
                request = self.client.build_request(scope["method"], target, headers=forwarded, content=raw)
                response = await self.client.send(request, stream=True)
                try:
                    chunks, size = [], 0
                    iterator = response.aiter_raw()
                    async for chunk in iterator:
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > cap:
                            break
                    answer_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
                    if size > cap:
                        LOGGER.warning("relayed, not recorded: %s %s answered %d with more than %d bytes "
                                       "(--cassette-max-exchange-bytes)", scope["method"], scope["path"],
                                       response.status_code, cap)
                        self.not_recorded += recordable
                        await send({"type": "http.response.start", "status": response.status_code,
                                    "headers": answer_headers})
                        for chunk in chunks:
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        async for chunk in iterator:
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        await send({"type": "http.response.body", "body": b""})
                        return
                    body = b"".join(chunks)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            LOGGER.warning("no answer from the upstream for %s %s within --upstream-timeout (%g s); not retried",
                           scope["method"], scope["path"], self.upstream_timeout)
            await _proxy_error(send, 504, "upstream_timeout",
                               f"The upstream did not answer within {self.upstream_timeout:g} s (--upstream-timeout); "
                               "the recording proxy does not retry.")
            return
        except httpx.HTTPError as error:
            LOGGER.warning("the upstream could not be reached for %s %s: %s; not retried", scope["method"],
                           scope["path"], type(error).__name__)
            await _proxy_error(send, 502, "upstream_unreachable",
                               f"The recording proxy could not reach the upstream ({type(error).__name__}); "
                               "it does not retry.")
            return
        if recordable:
            try:
                await self.record(provider, scope, headers, raw, response, body)
            except Exception:  # a bug here must not cost the client its answer
                LOGGER.exception("relayed, not recorded: %s %s: recording failed", scope["method"], scope["path"])
                self.not_recorded += 1
        await _send(send, response.status_code, answer_headers, body)

    async def record(self, provider: Provider, scope: Scope, headers: Headers, raw: bytes,
                     response: httpx.Response, body: bytes) -> None:
        """Write one exchange (its images downloaded first); a warning, not an error, when it
        cannot be kept."""
        encoding = response.headers.get("content-encoding", "identity").lower()
        if encoding not in ("identity", ""):
            self._skip(scope, f"the answer is {encoding}-encoded although identity was asked for")
            return
        shape = self.shapes[provider.path]
        secrets = secrets_in(headers.items())
        canonical = Canonicaliser(shape)
        room = self.settings.cassette_max_exchange_bytes - len(raw) - len(body)
        downloads = {}
        # One deadline for all of an answer's downloads: the client is waiting for its answer.
        deadline = anyio.current_time() + self.download_timeout
        for index, url in enumerate(answer_links(shape, body)):
            if index >= MAX_DOWNLOADS:
                downloads[url] = (None, f"more than {MAX_DOWNLOADS} image links in one answer")
                continue
            digest, reason, size = await self.download(url, room, canonical, deadline)
            downloads[url] = (digest, reason)
            room -= size
        request_body = await anyio.to_thread.run_sync(canonical.request, raw)
        answer_body = await anyio.to_thread.run_sync(canonical.answer, body, downloads)
        exchange: dict[str, Any] = {
            "provider": provider.name,
            "recorded_at": int(time.time()),
            "request": {
                "method": scope["method"], "path": scope["path"],
                "query": scrubbed_query(scope.get("query_string", b""), secrets),
                "credentials": credentials_form(headers.get("authorization")),
                "headers": vary_headers(shape, headers.items()),
                "body": scrub(request_body, secrets),
            },
            "response": {
                "status": response.status_code,
                "headers": {name.lower(): scrub(value, secrets) for name, value in response.headers.items()
                            if answer_header_kept(name)},
                "body": scrub(answer_body, secrets),
            },
        }
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                name = await anyio.to_thread.run_sync(self.writer.write, exchange, canonical.blobs)
            except TooLarge as reason:
                self._skip(scope, str(reason))
                return
            except OSError as error:
                self._skip(scope, f"the cassette could not be written: {error.strerror}")
                return
        self.recorded += 1
        LOGGER.info("recorded exchanges/%s: %s %s -> %d", name, scope["method"], scope["path"], response.status_code)

    @property
    def _late(self) -> str:
        return f"not downloaded within the {self.download_timeout:g} s an answer's images have (--download-timeout)"

    def _skip(self, scope: Scope, reason: str) -> None:
        self.not_recorded += 1
        LOGGER.warning("relayed, not recorded: %s %s: %s", scope["method"], scope["path"], reason)

    async def download(self, url: str, room: int, canonical: Canonicaliser,
                       deadline: float) -> tuple[str | None, str, int]:
        """Fetch an image link once, without credentials, within ``room`` bytes and by
        ``deadline`` (``--download-timeout`` for all of an answer's links): (its sha256, "",
        size), or (None, why not, 0)."""
        if room <= 0:
            return None, "no room left in the exchange (--cassette-max-exchange-bytes)", 0
        if anyio.current_time() >= deadline:
            return None, self._late, 0
        try:
            with anyio.fail_at(deadline):
                async with self.client.stream("GET", url, headers={"accept-encoding": "identity"}) as answer:
                    if answer.status_code != 200:
                        return None, f"the link answered {answer.status_code}", 0
                    chunks, size = [], 0
                    async for chunk in answer.aiter_raw():
                        size += len(chunk)
                        if size > room:
                            return None, f"larger than the {room:,} bytes left (--cassette-max-exchange-bytes)", 0
                        chunks.append(chunk)
        except (TimeoutError, httpx.TimeoutException):
            return None, self._late, 0
        except (httpx.HTTPError, ValueError) as error:
            return None, f"could not be downloaded ({type(error).__name__})", 0
        data = b"".join(chunks)
        digest = sha256(data)
        canonical.blobs.setdefault(digest, data)
        return digest, "", len(data)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if not any(name.lower() == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def _proxy_error(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"message": message, "type": "proxy_error", "param": None, "code": code}})
    await _send(send, status, [(b"content-type", b"application/json"), (b"x-mock-proxy-error", code.encode())], body)

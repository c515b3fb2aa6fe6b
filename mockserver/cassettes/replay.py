"""``serve --replay DIR``: the edit endpoints answer from a cassette first.

A request whose canonical form (``canonical.py``) matches a recorded one gets the recorded
status, answer headers and body, with three things made the mock's own: image links become
links of this mock that serve the recorded bytes (``/files/replay/...``: signed and
stateless like the mock's other links, so any worker or a restarted mock with the same
cassette and ``--url-secret`` serves them), ``created`` is the mock's clock, and the request
id echoed in the body (wherever the recorded ``x-request-id`` appears; where none was
recorded, at the places the schemas give) is this answer's. Repeated identical
requests get the recorded answers in their recorded order, the last one repeating.

A miss is answered as the mock answers (generated images), or with ``--replay-strict`` by
a 404 in the provider's envelope naming the nearest recorded request and the fields that
differ. Every answer says which: ``x-mock-replay: hit`` or ``miss``.

The endpoint takes the place of the provider's edit endpoint under the test controls
(``app.py``), so faults, scenarios, latency and the journal apply to replayed calls too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import ApiError
from ..core.settings import Settings
from ..http.auth import authenticate
from ..http.body import check_value_count, read_body
from ..http.endpoint import origin
from ..http.responses import error_parts, error_response, header_list, not_found
from ..providers.api import Provider
from .canonical import (
    Canonicaliser,
    body_bytes,
    credentials_form,
    dump_json,
    expand,
    is_marker,
    request_key,
    scrub,
    scrubbed_query,
    secrets_in,
    vary_headers,
)
from .cassette import NOT_REPLAYED, Blob, Cassette, Recorded, load
from .near_miss import MAX_LEAVES, differences, fingerprint, flatten
from .shapes import Shape

LOGGER = logging.getLogger("qwen_image_mock.replay")
REPLAY_HEADER = b"x-mock-replay"
THREAD_BYTES = 256 * 1024  # bodies larger than this are made canonical off the event loop
SHOWN_DIFFERENCES = 8
MAX_EXPIRES = 10**10


class ReplayLinks:
    """Signed links to recorded images: ``<payload>.<signature>.<extension>``, the payload
    naming the image's sha256, its provider and when the link expires. Keyed BLAKE2b with a
    key of its own, derived from ``--url-secret``."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"qwen-image-mock replay link\0" + secret.encode()).digest()

    def _signature(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._key, digest_size=16).digest()

    def name(self, digest: str | None, provider: str, expires: int, extension: str) -> str:
        payload = orjson.dumps([digest or "", provider, expires])
        return f"{_b64(payload)}.{_b64(self._signature(payload))}.{extension}"

    def verify(self, name: str) -> tuple[str | None, str, int, str]:
        """(sha256 or None, provider, expires, extension); ``ValueError`` if not one of ours."""
        parts = name.split(".")
        if len(parts) != 3:
            raise ValueError("malformed link")
        try:
            payload, signature = _unb64(parts[0]), _unb64(parts[1])
        except (binascii.Error, ValueError):
            raise ValueError("malformed link") from None
        if not hmac.compare_digest(signature, self._signature(payload)):
            raise ValueError("link signature does not match")
        try:
            digest, provider, expires = orjson.loads(payload)
        except (ValueError, TypeError):
            raise ValueError("malformed link") from None
        if not (isinstance(digest, str) and isinstance(provider, str) and type(expires) is int
                and 0 <= expires <= MAX_EXPIRES):
            raise ValueError("malformed link")
        return digest or None, provider, expires, parts[2]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def set_at(document: Any, parts: tuple[str, ...] | None, make: Callable[[Any], Any]) -> None:
    """Replace the value at ``parts`` by ``make(value)`` where there is one."""
    if not parts:
        return
    node = document
    for part in parts[:-1]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        node[last] = make(node[last])
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = make(node[int(last)])


def replaced(value: Any, old: str, new: str) -> Any:
    """``value`` with every string equal to ``old`` made ``new`` (the recorded request id,
    wherever the provider echoed it)."""
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {key: replaced(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [replaced(item, old, new) for item in value]
    return value


class Replay:
    """The cassette, indexed by match key, and where each key is in its recorded sequence."""

    def __init__(self, cassette: Cassette, settings: Settings, providers: list[Provider], strict: bool) -> None:
        self.cassette = cassette
        self.settings = settings
        self.strict = strict
        self.providers = {provider.name: provider for provider in providers}
        self.shapes = {provider.path: Shape.of(provider) for provider in providers}
        self.links = ReplayLinks(settings.url_secret)
        self.sequences: dict[str, list[Recorded]] = {}
        for exchange in cassette.exchanges:
            self.sequences.setdefault(exchange.key, []).append(exchange)
        # What a strict miss ranks recorded requests by; a loose replay never needs it.
        self.fingerprints = [(exchange, fingerprint(exchange.request_form, "")) for exchange in cassette.exchanges
                             ] if strict else []
        self.cursors: dict[str, int] = {}
        self.hits = 0
        self.misses = 0

    @classmethod
    def load(cls, settings: Settings, providers: list[Provider]) -> Replay:
        """``ValueError`` naming the file and the field if the cassette cannot be used."""
        assert settings.replay is not None
        cassette = load(settings.replay, paths={p.name: p.path for p in providers},
                        vary={p.name: tuple(h.lower() for h in p.vary) for p in providers},
                        max_bytes=settings.cassette_max_bytes, max_exchange_bytes=settings.cassette_max_exchange_bytes)
        return cls(cassette, settings, providers, settings.replay_strict)

    # -- wiring (app.py)

    def endpoints(self, edit_endpoints: dict[str, ASGIApp]) -> dict[str, ASGIApp]:
        """Each edit endpoint behind a replay endpoint of its provider."""
        by_path = {provider.path: provider for provider in self.providers.values()}
        return {path: ReplayEndpoint(self, by_path[path], self.shapes[path], endpoint)
                for path, endpoint in edit_endpoints.items()}

    def routes(self, guard: Callable[[Any], Any] | None) -> list[Route]:
        """The recorded images' links and, with ``guard`` (the admin endpoints' wrapper),
        ``GET /__mock/replay`` (the cassette and its counters) and ``DELETE /__mock/replay``
        (every sequence back to its start)."""
        routes = [Route("/files/replay/{name}", self.image, methods=["GET", "HEAD"])]
        if guard is not None:
            routes += [Route("/__mock/replay", guard(self.status), methods=["GET"]),
                       Route("/__mock/replay", guard(self.rewind_endpoint), methods=["DELETE"])]
        return routes

    # -- state

    def next(self, key: str) -> Recorded | None:
        sequence = self.sequences.get(key)
        if not sequence:
            return None
        position = self.cursors.get(key, 0)
        self.cursors[key] = min(position + 1, len(sequence) - 1)
        return sequence[position]

    def rewind(self) -> None:
        self.cursors.clear()
        self.hits = self.misses = 0

    def describe(self) -> dict[str, Any]:
        return {"cassette": str(self.cassette.directory), "upstream": self.cassette.upstream,
                "exchanges": len(self.cassette.exchanges), "strict": self.strict, "hits": self.hits,
                "misses": self.misses}

    async def status(self, request: Request) -> tuple[int, dict[str, Any]]:
        return 200, {"replay": self.describe()}

    async def rewind_endpoint(self, request: Request) -> tuple[int, dict[str, Any]]:
        self.rewind()
        return 200, {"replay": self.describe()}

    # -- answers

    def canonical(self, shape: Shape, scope: Scope, headers: Headers, raw: bytes) -> tuple[str, dict[str, Any]]:
        """The request's match key and canonical form (its own credential redacted first,
        as the recorder redacted it)."""
        secrets = secrets_in(headers.items())
        body = scrub(Canonicaliser(shape).request(raw), secrets)
        form = {"method": scope["method"], "path": scope["path"],
                "query": scrubbed_query(scope.get("query_string", b""), secrets),
                "credentials": credentials_form(headers.get("authorization")),
                "headers": vary_headers(shape, headers.items()), "body": body}
        return request_key(form["method"], form["path"], form["query"], form["credentials"], form["headers"],
                           body), form

    def answer(self, recorded: Recorded, shape: Shape, scope: Scope, headers: Headers,
               request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        provider = self.providers[recorded.provider]
        created = self.settings.now()
        lifetime = provider.link_lifetime if self.settings.url_lifetime is None else self.settings.url_lifetime
        base = self.settings.public_base_url or origin(scope, headers)

        def link(marker: dict[str, Any]) -> str:
            digest = marker["$image"]
            extension = self.cassette.blobs[digest].extension if digest else "png"
            return f"{base}/files/replay/{self.links.name(digest, provider.name, created + lifetime, extension)}"

        body = recorded.response_body
        recorded_id = recorded.response_headers.get("x-request-id")
        if is_marker(body):
            content = body_bytes(body, self.cassette.blob, link)
        else:
            value = expand(body, self.cassette.blob, link)
            if isinstance(value, dict) and recorded.status < 400:
                set_at(value, shape.created, lambda old: created if type(old) is int else old)
            if recorded_id:
                value = replaced(value, recorded_id, request_id)
            elif isinstance(value, dict):
                place = shape.request_id if recorded.status < 400 else shape.error_request_id
                set_at(value, place, lambda old: request_id if isinstance(old, str) else old)
            content = dump_json(value)
        raw_headers = [(name.encode(), text.encode("latin-1")) for name, text in recorded.response_headers.items()
                       if name not in NOT_REPLAYED]
        if "content-type" not in recorded.response_headers and not is_marker(body):
            raw_headers.append((b"content-type", b"application/json"))
        raw_headers += [(b"content-length", str(len(content)).encode()), (REPLAY_HEADER, b"hit"),
                        (b"x-mock-replay-exchange", recorded.name.encode())]
        return recorded.status, raw_headers, content

    def near_miss(self, form: dict[str, Any]) -> ApiError:
        """The 404 of ``--replay-strict``: the nearest recorded request and where it differs.
        Nearest: the fewest leaves not shared (``fingerprint``: the first 64 of each), by a set
        operation per recorded exchange."""
        sent = fingerprint(form, "")
        candidates = [(exchange, values) for exchange, values in self.fingerprints if exchange.path == form["path"]]
        if not candidates:
            error = ApiError("not_found", f"No recorded exchange matches this request (--replay-strict): the "
                                          f"cassette {self.cassette.directory} holds none for "
                                          f"{form['method']} {form['path']}.")
            error.headers["x-mock-replay"] = "miss"
            return error
        best, _ = min(candidates, key=lambda candidate: len(sent ^ candidate[1]))
        best_differences = differences(flatten(form, ""), flatten(best.request_form, ""))
        if not best_differences:  # the same in every value compared: the difference lies further on
            best_differences = [("…", f"the same first {MAX_LEAVES} values", "a later one differs")]
        shown = [f"{place} (recorded {'absent' if old is None else old}, sent {'absent' if new is None else new})"
                 for place, old, new in best_differences[:SHOWN_DIFFERENCES]]
        more = len(best_differences) - len(shown)
        message = (f"No recorded exchange matches this request (--replay-strict). The nearest is "
                   f"exchanges/{best.name}, which differs at: " + "; ".join(shown)
                   + (f"; and {more} more" if more > 0 else "") + ".")
        first = best_differences[0][0] if best_differences else ""
        error = ApiError("not_found", message, param=first[5:] if first.startswith("body.") else None)
        error.headers.update({"x-mock-replay": "miss", "x-mock-replay-nearest": best.name,
                              "x-mock-replay-differences": header_list([place for place, _, _ in best_differences])})
        return error

    def recorded_image(self, name: str) -> tuple[Blob | None, Provider, int]:
        """The recorded image a link names (None: not downloaded when recorded), its provider
        and the seconds the link has left; ``LookupError`` saying why for any other name."""
        try:
            digest, provider_name, expires, extension = self.links.verify(name)
        except ValueError as error:
            raise LookupError(f"No such image: {error}.") from None
        provider = self.providers.get(provider_name)
        blob = self.cassette.blobs.get(digest) if digest else None
        if provider is None or (digest is not None and (blob is None or blob.extension != extension)):
            raise LookupError("No such image in this mock's cassette.")
        return blob, provider, expires - self.settings.now()

    def picture(self, name: str) -> tuple[bytes, str] | None:
        """A recorded image's bytes and media type for the dashboard, expired or not (the page
        shows what was answered then); None if there is none."""
        try:
            blob, _, _ = self.recorded_image(name)
        except LookupError:
            return None
        return None if blob is None else (blob.data, blob.media_type)

    async def image(self, request: Request) -> Response:
        """``GET /files/replay/<name>``: a recorded image, while its link lasts."""
        try:
            blob, provider, remaining = self.recorded_image(request.path_params["name"])
        except LookupError as error:
            return not_found(str(error))
        if remaining < 0:
            return error_response(provider, ApiError("forbidden", "This image link has expired."),
                                  request.state.request_id)
        if blob is None:
            return not_found("This image could not be downloaded when the cassette was recorded, so it has no bytes "
                             "to serve (its exchange says why, as \"unavailable\").")
        return Response(blob.data, media_type=blob.media_type,
                        headers={"cache-control": f"private, max-age={remaining}"})


class ReplayEndpoint:
    """A raw ASGI app in the place of one provider's edit endpoint."""

    def __init__(self, replay: Replay, provider: Provider, shape: Shape, fallback: ASGIApp) -> None:
        self.replay = replay
        self.provider = provider
        self.shape = shape
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id: str = scope["state"]["request_id"]
        try:
            await self.handle(scope, receive, send, request_id)
        except Exception:
            LOGGER.exception("qwen-image-mock failed to replay %s %s", scope["method"], scope["path"])
            message = "The mock failed on this request; this is a bug in qwen-image-mock."
            body, status, headers, _ = error_parts(self.provider, ApiError("internal_error", message), request_id)
            await self.send(send, status, headers, body, b"miss")

    async def send(self, send: Send, status: int, headers: dict[str, str], body: bytes, replay: bytes) -> None:
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(name.encode(), value.encode()) for name, value in headers.items() if name != "x-mock-replay"]
        raw.append((REPLAY_HEADER, replay))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        replay = self.replay
        settings = replay.settings
        headers = Headers(scope=scope)
        try:
            if settings.api_keys:  # a key the mock refuses never reaches the cassette
                authenticate(headers.get("authorization"), settings.api_keys)
            raw = await read_body(scope, receive, headers, settings.max_body_bytes)
            check_value_count(raw)  # before the canonical form parses it
        except ApiError as error:
            replay.misses += 1
            body, status, error_headers, _ = error_parts(self.provider, error, request_id)
            await self.send(send, status, error_headers, body, b"miss")
            return
        if len(raw) > THREAD_BYTES:
            key, form = await anyio.to_thread.run_sync(replay.canonical, self.shape, scope, headers, raw)
        else:
            key, form = replay.canonical(self.shape, scope, headers, raw)
        recorded = replay.next(key)
        if recorded is not None:
            replay.hits += 1
            status, raw_headers, content = replay.answer(recorded, self.shape, scope, headers, request_id)
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": content})
            return
        replay.misses += 1
        if replay.strict:
            near_miss = await anyio.to_thread.run_sync(replay.near_miss, form)  # one set per recorded exchange
            body, status, error_headers, _ = error_parts(self.provider, near_miss, request_id)
            await self.send(send, status, error_headers, body, b"miss")
            return
        await self.fallback(scope, _replayed_body(raw, receive), _marked(send, b"miss"))


def _replayed_body(raw: bytes, receive: Receive) -> Receive:
    """The body already read, once; then the connection's own messages (a disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return again


def _marked(send: Send, value: bytes) -> Send:
    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (REPLAY_HEADER, value)]}
        await send(message)

    return marked

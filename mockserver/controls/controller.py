"""The test controls in front of the routes: faults and latency asked for with ``Prefer``,
scenarios, chaos, global latency, and the journal.

Called by the app's front layer (``http/front.py``) for every request, once it has its id.
A plain call (no ``Prefer``, no scenarios, no chaos, no latency) costs a scan of its headers
and a journal entry. A call to an edit endpoint whose key would be refused gets the
endpoint's 401, as from a real gateway, and uses up no scenario or chaos. Otherwise the
order is: ``Prefer`` (a bad one is a 400), then the fault it names, or else the scenario
that fires, or else chaos; then the answer, the endpoint's, an error in the provider's
envelope or a network fault, prepared and held back for the latency; a client that leaves
meanwhile is not waited for.
"""

from __future__ import annotations

import time

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import ApiError
from ..core.formats import bearer_token
from ..core.settings import Settings
from ..http.auth import is_accepted
from ..http.responses import error_response
from ..providers.api import Provider
from . import network
from .faults import (
    DEFAULT_PAUSE_MS,
    Fault,
    Latency,
    Preferences,
    PreferError,
    parse_prefer,
)
from .journal import ANSWER_LIMIT, EAGER_BYTES, Journal, JournalEntry
from .scenarios import Chaos, ScenarioBook

# The mock's own endpoints are not journaled: reading the journal must not change it, and
# readiness polls would drown what a client sent.
UNOBSERVED = ("/__mock/", "/healthz")
# The ways to the dashboard (redirects to /__mock/) are the mock's own too.
UNOBSERVED_PATHS = frozenset({"/", "/__mock"})
NO_PREFERENCES = Preferences()


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class Exchange:
    """One request on its way through: keeps the body it reads and the JSON answer it sends
    (for the journal), notes the status, and adds the mock's headers to the response."""

    __slots__ = ("entry", "chunks", "size", "limit", "headers", "inner_receive", "outer_send", "body_complete",
                 "journal", "answer", "answer_size")

    def __init__(self, entry: JournalEntry | None, limit: int, headers: list[tuple[bytes, bytes]],
                 receive: Receive, send: Send, journal: Journal | None = None) -> None:
        self.entry = entry
        self.chunks: list[bytes] | None = []
        self.size = 0
        self.limit = limit
        self.headers = headers
        self.inner_receive = receive
        self.outer_send = send
        self.body_complete = False
        self.journal = journal  # where the entry goes, and its previews
        self.answer: list[bytes] | None = None  # the answer's body while it is kept
        self.answer_size = 0

    async def receive(self) -> Message:
        message = await self.inner_receive()
        body = message.get("body")
        if body and self.chunks is not None:
            self.size += len(body)
            if self.size <= self.limit:
                self.chunks.append(body)
        if not message.get("more_body", False):
            self.body_complete = True
        return message

    async def drain(self) -> None:
        """Read the rest of the request body, so the client has finished sending when we
        answer or misbehave."""
        while not self.body_complete:
            await self.receive()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.entry is not None:
                self.note_answer(self.entry, message)
            message = {**message, "headers": [*message.get("headers", ()), *self.headers]}
        elif self.entry is not None and (body := message.get("body")):
            self.answer_size += len(body)
            if self.answer is not None:
                self.answer.append(body)
                if self.answer_size > ANSWER_LIMIT:
                    self.answer = None
        await self.outer_send(message)

    def note_answer(self, entry: JournalEntry, start: Message) -> None:
        entry.status = start["status"]
        # The answer's own list (the mock's headers are added to a copy), sized in one pass
        # that also finds its type: only JSON answers are kept (an image link's PNG is drawn
        # again from the link). ASGI header names are lower-case.
        headers = start.get("headers", ())
        size, keep = 0, False
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"content-type":
                keep = value.startswith(b"application/json")
        entry.response_headers = headers
        entry.size += size
        self.answer = [] if keep else None

    async def keep_body(self) -> None:
        """Hand what was read of the body to the journal entry, and stop holding it."""
        entry, chunks = self.entry, self.chunks
        self.chunks = None
        if entry is None or chunks is None:
            return
        # A body the endpoint refused to read past the limit is not kept, only its size.
        raw = b"".join(chunks) if self.size <= self.limit else b""
        if len(raw) > EAGER_BYTES:
            # Reducing megabytes of image data (decode, hash) would stall every other request.
            previews = self.journal.previewer() if self.journal is not None else None
            await anyio.to_thread.run_sync(entry.set_body, raw, self.size, previews)
        else:
            entry.set_body(raw, self.size)

    async def finish(self, started: float) -> None:
        """Hand the request's body and the answer's to the journal entry, and stop holding them."""
        entry = self.entry
        if entry is None:
            return
        entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        if self.chunks is not None:
            await self.keep_body()
        chunks, self.answer = self.answer, None
        raw = None if chunks is None else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if raw is not None and len(raw) > EAGER_BYTES:
            # Reduced like a request's body: base64 images decoded and hashed, off the event loop.
            previews = self.journal.previewer() if self.journal is not None else None
            await anyio.to_thread.run_sync(entry.set_response, raw, self.answer_size, previews)
        else:
            entry.set_response(raw, self.answer_size)


class MockControl:
    def __init__(self, app: ASGIApp, *, providers: dict[str, Provider], settings: Settings,
                 journal: Journal | None, scenarios: ScenarioBook, chaos: Chaos, latency: Latency) -> None:
        self.app = app
        self.providers = providers
        self.settings = settings
        self.journal = journal
        self.scenarios = scenarios
        self.chaos = chaos
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        """Called by the front (``http/front.py``), which has given the request its id."""
        provider = self.providers.get(scope["path"]) if scope["method"] == "POST" else None
        controlled = (
            provider is not None
            and (bool(self.scenarios or self.chaos or self.latency) or any(k == b"prefer" for k, _ in scope["headers"]))
            and self.is_authorized(scope)
        )
        entry = None
        if (self.journal is not None and not scope["path"].startswith(UNOBSERVED)
                and scope["path"] not in UNOBSERVED_PATHS):
            entry = JournalEntry(time.time(), scope, provider.name if provider else None, scope["state"]["request_id"])
        exchange = Exchange(entry, self.settings.max_body_bytes, headers, receive, send, self.journal)
        started = time.perf_counter()
        try:
            if controlled:
                assert provider is not None
                await self.edit_call(scope, exchange, provider)
            else:
                # Only the journal needs to see the body go by.
                await self.app(scope, exchange.receive if entry is not None else receive, exchange.send)
        finally:
            if entry is not None and self.journal is not None:
                await exchange.finish(started)
                self.journal.record(entry)

    def is_authorized(self, scope: Scope) -> bool:
        """Whether the endpoint would accept the caller's key: a call it refuses is answered
        401 before any fault, and counts toward no scenario, as at a real gateway."""
        token = bearer_token(header(scope, b"authorization"))
        keys = self.settings.api_keys
        return token is not None and (not keys or is_accepted(token, keys))

    async def edit_call(self, scope: Scope, exchange: Exchange, provider: Provider) -> None:
        request_id: str = scope["state"]["request_id"]
        entry = exchange.entry
        preferences = NO_PREFERENCES
        prefer = [v.decode("latin-1") for k, v in scope["headers"] if k == b"prefer"]
        if prefer:
            try:
                preferences = parse_prefer(prefer)
            except PreferError as error:
                await exchange.drain()
                response = error_response(provider, ApiError("invalid_parameter", str(error)), request_id)
                await response(scope, exchange.receive, exchange.send)
                return

        fault, source, latency = preferences.fault, "prefer", preferences.latency_ms
        if fault is None and not preferences.succeed:
            scenario = None
            if self.scenarios:
                scenario = self.scenarios.decide(provider.name, bearer_token(header(scope, b"authorization")),
                                                 header(scope, b"x-mock-session"))
            if scenario is not None:
                fault, source = scenario.fault, f"scenario {scenario.id}"
                latency = scenario.latency_ms if latency is None else latency
            elif self.chaos:
                fault, source = self.chaos.decide(), "chaos"
        if latency is None and self.latency:
            latency = self.latency.next_ms()

        applied = preferences.applied_header
        if applied:
            exchange.headers.append((b"preference-applied", applied.encode()))
        if fault is not None:
            exchange.headers += [(b"x-mock-fault", fault.name.encode()), (b"x-mock-fault-source", source.encode())]
        if entry is not None:
            entry.preference_applied = applied
            entry.latency_ms = latency or 0
            if fault is not None:
                entry.fault, entry.fault_source = fault.name, source

        receive: Receive = exchange.receive
        if fault is not None and fault.name == "reset":
            await exchange.drain()
            if await self.wait(scope, exchange, latency):
                await network.reset(scope, receive)
            return
        if fault is None or fault.is_network:
            messages = await self.answer(scope, receive)
        else:
            await exchange.drain()
            error = fault.to_error(provider.timeout_kind, source, self.settings.retry_after_ms)
            messages = await self.answer(scope, receive, error_response(provider, error, request_id))
        if not await self.wait(scope, exchange, latency):
            return
        if fault is None or not fault.is_network:
            for message in messages:
                await exchange.send(message)
        else:
            await self.misbehave(scope, receive, exchange.send, fault, messages)

    async def answer(self, scope: Scope, receive: Receive, app: ASGIApp | None = None) -> list[Message]:
        """The messages of the endpoint's answer (or ``app``'s), kept to be sent later."""
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await (app or self.app)(scope, receive, keep)
        return messages

    async def wait(self, scope: Scope, exchange: Exchange, latency: int | None) -> bool:
        """The latency's pause, holding no more of the request than the journal keeps;
        whether the client is still there after it."""
        if not latency:
            return True
        await exchange.keep_body()
        return await network.pause(exchange.receive, latency / 1000, scope["state"])

    async def misbehave(self, scope: Scope, receive: Receive, send: Send, fault: Fault, messages: list[Message]
                        ) -> None:
        """``truncated`` and ``slow_body``: the endpoint's own answer, badly delivered."""
        start = next(m for m in messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        if fault.name == "truncated":
            await network.truncated(scope, receive, send, start, body)
        else:
            await network.slow_body(receive, send, start, body,
                                    DEFAULT_PAUSE_MS if fault.pause_ms is None else fault.pause_ms)

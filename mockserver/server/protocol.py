"""uvicorn's HTTP protocol with the bounds an ASGI app cannot set itself.

The app sees a request only once its head (request line and headers) has arrived whole, so
a head of megabytes, or one dribbled a byte a minute, never reaches it; and once the app has
answered, the rest of an unread body is dropped by the server for as long as the client
keeps sending it. Here the server gives each request ``read_timeout`` seconds from its first
byte to arrive whole, and refuses a head over ``max_header_bytes``:

- a head too large: 431, and the connection is closed;
- a head not complete in time: 408, and the connection is closed (so is a connection that
  sends nothing for as long);
- a body not complete in time: the request is marked (``BODY_LATE`` in its scope's state) and
  the app's read wakes up, so the endpoint answers 408 in the provider's envelope; the
  connection is closed after that answer, or at once if the app has answered already.

When the server stops, a request the app is holding back on purpose (``Prefer: latency``)
is marked (``SERVER_STOPPING``) and answered at once.

One timer per request, armed at its first byte and cancelled when it is complete: on the
path every request takes, that is all this costs.
"""

from __future__ import annotations

from asyncio import TimerHandle
from functools import cache
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..core.settings import Settings
from ..http.server_marks import BODY_LATE, SERVER_STOPPING

# After a late body is signalled, how long the app has to answer before the connection goes.
ANSWER_GRACE_SECONDS = 5.0


@cache
def _limits() -> tuple[int, float]:
    # uvicorn builds the protocol in each worker process, which reads the same settings
    # (the CLI passes flags as environment variables).
    settings = Settings.from_env()
    return settings.max_header_bytes, settings.read_timeout


class HeadTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # (max_header_bytes, read_timeout); None: from the settings in the environment, as in
    # worker processes the CLI starts.
    limits: tuple[int, float] | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> type[BoundedHttpToolsProtocol]:
        """The protocol with these settings' limits, for a server run in this process."""
        return type(cls.__name__, (cls,), {"limits": (settings.max_header_bytes, settings.read_timeout)})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes, self.read_timeout = self.limits or _limits()
        self.head_bytes = 0
        self.head_complete = True
        self.refusal: tuple[int, str, str] | None = None
        self.deadline: TimerHandle | None = None

    def _arm(self, seconds: float, on_expiry: Any) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, on_expiry)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # A connection that sends nothing at all is answered like a slow head.
        self.head_complete = False
        self._arm(self.read_timeout, self._too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        self.head_complete = False
        self._arm(self.read_timeout, self._too_slow)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.head_complete = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.max_head_bytes:
            self.refusal = (431, "request_header_fields_too_large",
                            f"The request line and headers are larger than the limit of {self.max_head_bytes} bytes.")
            # Raising from a parser callback stops the parser; uvicorn then answers through
            # send_400_response, which sends the refusal instead.
            raise HeadTooLarge(self.head_bytes)

    def _too_slow(self) -> None:
        self.deadline = None
        if not self.head_complete:
            self.refusal = (408, "request_timeout",
                            f"The request line and headers did not arrive within {self.read_timeout:g} s.")
            self.send_400_response("")
            return
        cycle = self.cycle
        if cycle is None or cycle.response_started or cycle.disconnected:
            # The app has answered, or is answering, without the rest of the body: no reason
            # to keep a connection for a client still dribbling it.
            self.transport.close()
            return
        self.scope["state"][BODY_LATE] = True
        cycle.keep_alive = False
        cycle.message_event.set()  # wakes the app's read, which sees the mark
        self._arm(ANSWER_GRACE_SECONDS, self.transport.close)

    def shutdown(self) -> None:
        # A request the app is holding back on purpose (Prefer: latency) is answered now,
        # rather than waited for or cancelled with a 500.
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self.scope["state"][SERVER_STOPPING] = True
            cycle.message_event.set()
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        if self.refusal is None:
            super().send_400_response(msg)
            return
        status, code, message = self.refusal
        body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                       "code": code}})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                 b"\r\nconnection: close\r\n\r\n", body]
        if not self.transport.is_closing():
            self.transport.write(b"".join(head))
            self.transport.close()

"""uvicorn's HTTP protocol with the bounds an ASGI app cannot set itself.

The app sees a request only once its head (request line and headers) has arrived whole, so
a head of megabytes, or one dribbled a byte a minute, never reaches it; and once the app
has answered, the rest of an unread body is dropped by the server for as long as the client
keeps sending it. Here the server itself refuses a head over ``max_header_bytes`` (431), one
that has not arrived within ``read_timeout`` seconds of its first byte (408; a connection
that sends nothing is closed after as long), and closes a connection whose
request message has not finished arriving ``read_timeout`` seconds (plus a grace, so the app
can answer first) after its head.
"""

from __future__ import annotations

from asyncio import TimerHandle
from functools import cache
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .settings import Settings

# The app's own body deadline starts with the body; this one a little later still.
BODY_GRACE_SECONDS = 1.0


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
        self.refusal: tuple[int, str, str] | None = None
        self.deadline: TimerHandle | None = None

    def _set_deadline(self, seconds: float, on_expiry: Any) -> None:
        self._cancel_deadline()
        self.deadline = self.loop.call_later(seconds, on_expiry)

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # A connection that sends nothing at all is closed like a slow head.
        self._set_deadline(self.read_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        self._set_deadline(self.read_timeout, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._set_deadline(self.read_timeout + BODY_GRACE_SECONDS, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.max_head_bytes:
            self.refusal = (431, "request_header_fields_too_large",
                            f"The request line and headers are larger than the limit of {self.max_head_bytes} bytes.")
            # Raising from a parser callback stops the parser; uvicorn then answers through
            # send_400_response, which sends the refusal instead.
            raise HeadTooLarge(self.head_bytes)

    def _head_too_slow(self) -> None:
        self.deadline = None
        self.refusal = (408, "request_timeout",
                        f"The request line and headers did not arrive within {self.read_timeout:g} s.")
        self.send_400_response("")

    def _body_too_slow(self) -> None:
        # The app has answered or given up on this body (its own deadline is shorter): no
        # reason to keep the connection for a client still dribbling it.
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.close()

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

"""The app's outermost layer: every request gets its id (``x-request-id`` on every answer, a
500 from Starlette's error middleware too), and the server's own ``send`` is kept in the
scope (``SERVER_SEND``) for whatever must reach the connection itself. Then the request goes
to the app, or to the test controls when the app has them: the core calls them through the
``Controls`` signature and knows nothing else of them."""

from __future__ import annotations

from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .request_id import request_id_for
from .server_marks import SERVER_SEND


class Controls(Protocol):
    async def __call__(self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        """Handle the request, adding ``headers`` to its answer."""


class Front:
    def __init__(self, app: ASGIApp, controls: Controls | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.app = app
        self.controls = controls
        self.headers = headers or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[SERVER_SEND] = send
        request_id = request_id_for(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        headers = [(b"x-request-id", request_id.encode()), *self.headers]
        if self.controls is not None:
            await self.controls(scope, receive, send, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

"""Network faults: a connection reset before any response, a body cut short, a body
dribbled out slowly.

ASGI has no message for "drop the connection", and an ASGI server answers 500 to an app
that raises or returns before responding; so ``reset`` and ``truncated`` need the
connection itself. The app's front layer keeps the server's own ``send`` in the scope
(``SERVER_SEND``; Starlette's error middleware, outside all user middleware, wraps it
otherwise), and on uvicorn that ``send`` is bound to the request cycle holding the transport. Elsewhere
(httpx's ``ASGITransport``, Starlette's ``TestClient``) there is no connection to drop:
these two faults raise ``SimulatedNetworkFault`` in the client instead.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import anyio
from starlette.types import Message, Receive, Scope, Send

from ..http.server_marks import SERVER_SEND, SERVER_STOPPING

SLOW_BODY_PIECES = 10


class SimulatedNetworkFault(ConnectionError):
    """Raised to an in-process client, where there is no real connection to misbehave on."""


def server_transport(scope: Scope) -> Any | None:
    """The asyncio (or uvloop) transport of this request's connection, when the server is uvicorn."""
    cycle = getattr(scope.get(SERVER_SEND), "__self__", None)
    transport = getattr(cycle, "transport", None)
    return transport if hasattr(transport, "abort") and hasattr(transport, "get_extra_info") else None


async def wait_for_disconnect(receive: Receive) -> None:
    # The server notices the closed connection on its next loop turn; returning only then
    # keeps it from answering 500 (or logging) on a connection that is already gone.
    while (await receive())["type"] != "http.disconnect":
        pass


async def pause(receive: Receive, seconds: float, state: dict[str, object]) -> bool:
    """Wait ``seconds`` before answering, unless the client goes away first (a client that
    timed out must not keep the server busy, nor hold what its request cost) or the server
    is stopping (``SERVER_STOPPING`` in the request's ``state``: answer now). Whatever is
    left of the request body is read and dropped meanwhile. Returns whether the client is
    still there."""
    with anyio.move_on_after(seconds):
        while SERVER_STOPPING not in state:
            if (await receive())["type"] == "http.disconnect":
                return False
    return True


async def reset(scope: Scope, receive: Receive) -> None:
    """Drop the connection without a response, with a TCP reset (SO_LINGER 0). The caller
    has read the request body: the client has finished sending."""
    transport = server_transport(scope)
    if transport is None:
        raise SimulatedNetworkFault("fault reset: the connection was reset by the mock")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await wait_for_disconnect(receive)


async def truncated(scope: Scope, receive: Receive, send: Send, start: Message, body: bytes) -> None:
    """Send the headers (promising the whole body) and half the body, then close."""
    await send(with_content_length(start, len(body)))
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    transport = server_transport(scope)
    if transport is None:
        raise SimulatedNetworkFault("fault truncated: the mock closed the connection in the middle of the body")
    transport.close()
    await wait_for_disconnect(receive)


async def slow_body(receive: Receive, send: Send, start: Message, body: bytes, pause_ms: int) -> None:
    """Send the headers at once, then the body in pieces with a pause before each; stop if
    the client goes away (a client that timed out should not keep the server busy)."""
    size = max(1, -(-len(body) // SLOW_BODY_PIECES))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]

    async def dribble() -> None:
        await send(with_content_length(start, len(body)))
        for index, piece in enumerate(pieces):
            await anyio.sleep(pause_ms / 1000)
            await send({"type": "http.response.body", "body": piece, "more_body": index < len(pieces) - 1})

    async with anyio.create_task_group() as tasks:
        async def watch() -> None:
            await wait_for_disconnect(receive)
            tasks.cancel_scope.cancel()

        tasks.start_soon(watch)
        await dribble()
        tasks.cancel_scope.cancel()


def with_content_length(start: Message, length: int) -> Message:
    # With Content-Length, a client knows the body was cut short rather than just ended.
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return {**start, "headers": headers}

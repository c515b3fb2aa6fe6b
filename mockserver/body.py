"""Reading a request body with a hard size limit, and parsing it as a JSON object."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import Request

from .errors import ApiError


def _too_large(limit: int) -> ApiError:
    return ApiError("body_too_large", f"Request body is larger than the limit of {limit} bytes.")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed ``limit``: nothing past it is buffered."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    # Straight from ASGI messages: Starlette's request.stream() costs more than the whole
    # of reading a small body this way.
    chunks, size, more = [], 0, True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            # Nobody will read the answer; this keeps it out of the server's error log.
            raise ApiError("invalid_json", "The client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON (and the real services) do not.
    raise ValueError(f"{name} is not a JSON value")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits, which are valid JSON (and then out of
        # range for a field, which deserves that message); the standard parser decides.
        body = _parse_slowly(raw)
    if not isinstance(body, dict):
        raise ApiError("invalid_json", f"Request body must be a JSON object, not {type(body).__name__}.")
    return body


def _parse_slowly(raw: bytes) -> Any:
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
        # The standard parser accepts lone surrogates ("\ud800"), which are not text.
        json.dumps(body, ensure_ascii=False).encode()
        return body
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError("invalid_json", f"Request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise ApiError("invalid_json", "Request body is nested too deeply.") from None

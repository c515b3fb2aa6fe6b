"""Reading a request body within a size limit and the server's deadline, and parsing it as a
JSON object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import Receive, Scope

from ..core.errors import ApiError
from ..core.formats import JsonTooDeep, NotJson, exceeds, load_json
from .server_marks import BODY_LATE

# Content types that are certainly not JSON. Anything else is parsed: curl's ``-d`` sends JSON
# as application/x-www-form-urlencoded, and the real gateways read such bodies as JSON too.
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _too_large(limit: int) -> ApiError:
    return ApiError("body_too_large", f"Request body is larger than the limit of {limit} bytes.")


async def read_body(scope: Scope, receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed ``limit`` (nothing past it is
    buffered), or 408 if the server marks it late (see ``server/protocol.py``)."""
    declared = headers.get("content-length")
    if declared is not None and exceeds(declared, limit):
        raise _too_large(limit)
    # Straight from ASGI messages: Starlette's request.stream() costs more than the whole
    # of reading a small body this way.
    state = scope.get("state", {})
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if BODY_LATE in state:
            raise ApiError("timeout", "The request body did not arrive in time (the mock's --read-timeout).")
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


# Parsed, a JSON value costs Python 30-100 bytes however few bytes it takes to send: a 20 MiB
# body of "0," is nine million of them, ~800 MB once parsed and validated. No request of any
# provider comes near this many (a few fields and images), so past it the body is refused
# before it is parsed.
MAX_JSON_VALUES = 100_000


def check_value_count(raw: bytes) -> None:
    """413 for a body that may hold more than ``MAX_JSON_VALUES`` values. Counted from the
    bytes that open or separate values (commas in strings count too, so the count is an
    upper bound), at C speed: ~10 ms for 20 MiB."""
    count = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if count > MAX_JSON_VALUES:
        raise ApiError("body_too_large", f"Request body holds more than {MAX_JSON_VALUES:,} JSON values (counted by "
                                         "its commas and brackets); the mock refuses bodies this large in structure.")


def parse_json_object(raw: bytes, headers: Mapping[str, str], hint: str) -> dict[str, Any]:
    """The body as a JSON object; a 400 that says how to send one (``hint``) otherwise."""
    check_value_count(raw)
    try:
        body = load_json(raw)
    except JsonTooDeep:
        raise ApiError("invalid_json", "Request body is nested too deeply.") from None
    except NotJson as error:
        media_type = (headers.get("content-type") or "").partition(";")[0].strip().lower()
        if media_type == "multipart/form-data":
            raise ApiError("invalid_json", f"This endpoint takes a JSON body, not multipart/form-data. {hint}") from None
        sent = f" (sent as {media_type})" if media_type in FORM_TYPES else ""
        raise ApiError("invalid_json", f"Request body is not valid JSON{sent}: {error}. {hint}") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_json", f"Request body must be a JSON object, not {type(body).__name__}. {hint}")
    return body

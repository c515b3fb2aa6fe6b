"""JSON responses (encoded with orjson: on the hot path, json.dumps is a tenth of a
request), the envelope for answers outside any provider, and lists carried in headers."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response

HEADER_LIMIT = 4096


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json", headers=headers)


def error_envelope(status: int, code: str, message: str) -> Response:
    """For answers outside any provider's routes, the OpenAI-style envelope both share."""
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return json_response(body, status)


def not_found(message: str) -> Response:
    return error_envelope(404, "not_found", message)


def header_list(items: list[str]) -> str:
    """A JSON list safe to put in a header: ASCII only, and bounded in size."""
    kept: list[str] = []
    for item in items:
        if len(json.dumps(kept + [item])) > HEADER_LIMIT:
            break
        kept.append(item)
    return json.dumps(kept)

"""JSON responses (encoded with orjson: on the hot path, json.dumps is a tenth of a
request), errors in a provider's envelope or in the mock's own, and lists carried in headers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from ..core.errors import ApiError

if TYPE_CHECKING:
    from ..providers.api import Provider

HEADER_LIMIT = 4096


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json", headers=headers)


def error_response(provider: Provider, error: ApiError, request_id: str) -> Response:
    """``error`` in ``provider``'s envelope, with its status; all the request's violations
    in ``x-mock-violations``, and the schema rule that decided (with its source) in
    ``x-mock-rule`` and ``x-mock-rule-source``."""
    return Response(*error_parts(provider, error, request_id))


def error_parts(provider: Provider, error: ApiError, request_id: str) -> tuple[bytes, int, dict[str, str], str]:
    """The body, status, headers and media type of ``error_response``."""
    headers = dict(error.headers)
    if error.violations:
        headers["x-mock-violations"] = header_list(error.violations)
    if error.rule:
        headers["x-mock-rule"] = error.rule
        headers["x-mock-rule-source"] = error.source or "assumption"
    body = orjson.dumps(provider.error_body(error, request_id))
    return body, provider.error_status(error.kind), headers, "application/json"


def error_envelope(status: int, code: str, message: str) -> Response:
    """For answers outside any provider's paths (the mock's own endpoints): an OpenAI-style
    envelope, ``{"error": {"message", "type", "param", "code"}}``."""
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

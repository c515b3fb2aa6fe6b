"""Bearer-token authentication, as both providers do it."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers

from .errors import ApiError


def bearer_token(headers: Headers) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError("authentication", "Missing or malformed Authorization header: expected 'Bearer <token>'.")
    return token


def authenticate(headers: Headers, accepted_keys: frozenset[str]) -> str:
    """The caller's token, if it is accepted: any non-empty token unless keys are configured."""
    token = bearer_token(headers)
    if accepted_keys and not any(hmac.compare_digest(token.encode(), key.encode()) for key in accepted_keys):
        raise ApiError("authentication", "Invalid API key.")
    return token

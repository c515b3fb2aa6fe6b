"""Bearer-token authentication, as both providers do it."""

from __future__ import annotations

import hmac

from ..core.errors import ApiError
from ..core.formats import bearer_token

MALFORMED = "Missing or malformed Authorization header: expected 'Bearer <token>'."


def authenticate(authorization: str | None, accepted_keys: frozenset[str]) -> str:
    """The caller's token, if it is accepted: any non-empty token unless keys are configured."""
    token = bearer_token(authorization)
    if token is None:
        raise ApiError("authentication", MALFORMED)
    if accepted_keys and not is_accepted(token, accepted_keys):
        raise ApiError("authentication", "Invalid API key.")
    return token


def is_accepted(token: str, accepted_keys: frozenset[str]) -> bool:
    # Every key is compared, in constant time, so timing tells nothing about which nearly matched.
    encoded = token.encode("utf-8", "surrogateescape")
    return any([hmac.compare_digest(encoded, key.encode()) for key in accepted_keys])

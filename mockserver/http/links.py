"""Signed, self-contained image links.

A link carries everything needed to draw its image (the render spec) and when it
expires, signed with a keyed hash (BLAKE2b). Any mock process holding the same key can serve any link,
after a restart too, without shared storage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import NamedTuple

import orjson

from ..core.formats import whole_number
from ..images.render import INDEX_LIMIT, RenderSpec

SIGNATURE_BYTES = 16
# Links expire; a date past any plausible lifetime (year 2286) is not one the mock issued.
MAX_EXPIRES = 10**10


class LinkError(Exception):
    pass


class Link(NamedTuple):
    spec: RenderSpec  # the first image's: the others differ only in their index
    provider: str
    expires: int
    count: int = 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret: str) -> None:
        # BLAKE2b takes keys of up to 64 bytes; any secret fits once hashed.
        self._key = hashlib.sha256(secret.encode()).digest()

    def _signature(self, payload: bytes) -> bytes:
        # Keyed BLAKE2b is a MAC in one C call: a third of the cost of HMAC-SHA256 here.
        return hashlib.blake2b(payload, key=self._key, digest_size=SIGNATURE_BYTES).digest()

    def tokens(self, link: Link) -> list[str]:
        """One token per image, ``<payload>.<signature>.<offset>``: the images of one job
        share a payload that says how many there are, so it is signed once."""
        payload = orjson.dumps([link.spec.as_list(), link.provider, link.expires, link.count])
        signed = f"{_b64(payload)}.{_b64(self._signature(payload))}"
        return [f"{signed}.{offset}" for offset in range(link.count)]

    def token(self, link: Link) -> str:
        return self.tokens(link)[0]

    def verify(self, token: str) -> Link:
        """The link to one image a token stands for; ``LinkError`` if it was not issued
        with this key or does not hold together (the default key is public: a signature
        proves nothing, so the payload is checked as strictly as a request body)."""
        encoded, signature, offset_text = (token.split(".", 2) + ["", ""])[:3]
        try:
            payload, given = _unb64(encoded), _unb64(signature)
        except (binascii.Error, ValueError):
            raise LinkError("malformed link") from None
        if not hmac.compare_digest(given, self._signature(payload)):
            raise LinkError("link signature does not match")
        try:
            spec, provider, expires, count = orjson.loads(payload)
            first = RenderSpec.from_list(spec)
        except (ValueError, TypeError):
            raise LinkError("malformed link") from None
        if not (isinstance(provider, str) and type(expires) is int and 0 <= expires <= MAX_EXPIRES
                and type(count) is int and 1 <= count <= INDEX_LIMIT - first.index):
            raise LinkError("malformed link")
        offset = whole_number(offset_text, maximum=count - 1)
        if offset is None:
            raise LinkError("no such image in this link")
        return Link(spec=first._replace(index=first.index + offset), provider=provider, expires=expires)

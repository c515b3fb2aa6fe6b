"""Downloading input images given as URLs — only from hosts the user has allowed.

Off by default (no allowed hosts): the mock then never connects anywhere a request names.
When on, a download is limited to the allowed hosts (and ports, where an entry names one),
to the image size limit, and to a total deadline; redirects are not followed (they could
lead off the allow-list) and no proxy settings from the environment are used. Downloads run
on the event loop, so a slow host holds no worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx

from .errors import invalid_parameter

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class AllowedHost:
    """An entry of ``--fetch-hosts``: a host, on any port or on the one it names."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> AllowedHost:
        """``images.example.com``, ``127.0.0.1:8080`` or ``[::1]:8080``; ``ValueError`` for an
        entry that could never match a URL."""
        try:
            parts = urlsplit(f"//{entry.strip()}")
            host, port = parts.hostname, parts.port
        except ValueError as error:
            raise ValueError(f"{entry!r} is not a host or host:port ({error})") from None
        if not host or parts.path or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{entry!r} is not a host or host:port (no scheme, path or user)")
        if port == 0:
            raise ValueError(f"{entry!r}: port 0 never matches")
        return cls(host.lower(), port)

    def matches(self, host: str, port: int) -> bool:
        return host == self.host and (self.port is None or port == self.port)


def parse_hosts(text: str) -> frozenset[AllowedHost]:
    return frozenset(AllowedHost.parse(entry) for entry in text.split(",") if entry.strip())


def allowed_url(url: str, param: str, hosts: frozenset[AllowedHost]) -> bool:
    """Whether ``url`` may be fetched; a 400 naming ``param`` if it is not a usable URL."""
    if not hosts:
        return False
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError as error:
        raise invalid_parameter(param, f"the image URL is not a valid URL ({error})") from None
    return host is not None and port is not None and any(entry.matches(host, port) for entry in hosts)


async def fetch_image(url: str, param: str, max_bytes: int, deadline: float) -> bytes:
    """The bytes at ``url``, all received within ``deadline`` seconds; a 400 naming ``param``
    when they cannot be had within the limits."""
    try:
        with anyio.fail_after(deadline):
            return await _download(url, param, max_bytes)
    except TimeoutError:
        raise invalid_parameter(param, f"the image URL did not deliver the image within {deadline:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
        # httpx refuses some URLs (control characters, over 64 KiB) with InvalidURL, which is
        # not an HTTPError.
        raise invalid_parameter(param, f"the image URL could not be fetched: {type(error).__name__}") from None


async def _download(url: str, param: str, max_bytes: int) -> bytes:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise invalid_parameter(param, f"fetching the image URL answered {response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise invalid_parameter(param, f"the image at the URL is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

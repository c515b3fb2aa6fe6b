"""Downloading input images given as URLs — only from hosts the user has allowed.

Off by default (no allowed hosts): the mock then never connects anywhere a request names.
When on, a download is limited to the allowed hosts (and ports, where an entry names one),
to the image size limit, and to a total deadline; redirects are not followed (they could
lead off the allow-list) and no proxy settings from the environment are used. Downloads run
on the event loop, so a slow host holds no worker thread.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio
import httpx

from ..core.errors import invalid_parameter
from ..core.formats import AllowedHost

DEFAULT_PORTS = {"http": 80, "https": 443}


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

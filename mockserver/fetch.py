"""Downloading input images given as URLs — only from hosts the user has allowed.

Off by default (no allowed hosts): the mock then never connects anywhere a request names.
When on, a download is limited to the allowed hosts, to the image size limit, and in time;
redirects are not followed (they could lead off the allow-list) and no proxy settings from
the environment are used.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from .errors import invalid_parameter

TIMEOUT_SECONDS = 10.0


def is_allowed(url: str, hosts: frozenset[str]) -> bool:
    host = urlsplit(url).hostname
    return host is not None and host.lower() in hosts


def fetch_image(url: str, param: str, max_bytes: int) -> bytes:
    """The bytes at ``url``; a 400 naming ``param`` when they cannot be had within limits."""
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
            with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise invalid_parameter(param, f"fetching the image URL answered {response.status_code}")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise invalid_parameter(param, f"the image at the URL is larger than {max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
    except httpx.HTTPError as error:
        raise invalid_parameter(param, f"the image URL could not be fetched: {type(error).__name__}") from None

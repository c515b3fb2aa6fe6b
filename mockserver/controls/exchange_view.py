"""One exchange as the dashboard shows it: the journal entry (the request, reduced), the answer
(reduced the same way), the images each carried, their previews, the error with the rule
and source that decided it, and the command that sends the request again.

Images are found by what the journal made of them, whatever the provider: inline image data
is an image summary (media type, size, sha256) wherever it was; an image given by URL is a
string under an ``image`` key; an output link is a URL of the mock's own ``/files/<token>.png``,
which the page loads from ``/__mock/files/<token>.png`` (drawn again from the link, and not
journaled). Errors are read through each provider's envelope (``x-envelope``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ..core.schemas import json_path, placeholders
from ..providers.api import Provider
from .curl import curl_command
from .journal import JournalEntry, ReducedBody, is_image_summary
from .previews import PreviewStore, as_data_uri

# The mock's own image links: <payload>.<signature>.<offset>, base64url.
LINK = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]*)?(?:/[^?#\s]*)?/files/"
                  r"(?P<token>[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[0-9]{1,3})\.png")
# A replayed answer's links (``serve --replay``): /files/replay/<payload>.<signature>.<extension>.
REPLAY_LINK = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]*)?(?:/[^?#\s]*)?/files/replay/"
                         r"(?P<name>[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[a-z]{3,4})")
URL_SCHEMES = ("http://", "https://", "oss://")
# A link of the mock's is a few hundred characters; longer strings are not searched for one.
LINK_LIMIT = 4096


def at(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def walk(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value of a JSON document with its path, parents first."""
    yield path, value
    if isinstance(value, dict) and not is_image_summary(value):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index))


def inline_image(path: tuple[str | int, ...], summary: dict[str, Any]) -> dict[str, Any]:
    return {**summary, "where": json_path(path)}


def input_images(body: Any) -> list[dict[str, Any]]:
    images = []
    for path, value in walk(body):
        if is_image_summary(value):
            images.append(inline_image(path, value))
        elif (isinstance(value, str) and path and path[-1] == "image"
              and value[:8].lower().startswith(URL_SCHEMES)):
            images.append({"url": value, "where": json_path(path)})
    return images


def output_images(body: Any) -> list[dict[str, Any]]:
    images = []
    for path, value in walk(body):
        if is_image_summary(value):
            images.append(inline_image(path, value))
        elif isinstance(value, str) and "/files/" in value and len(value) <= LINK_LIMIT:
            link = LINK.fullmatch(value)
            recorded = REPLAY_LINK.fullmatch(value) if link is None else None
            if link:
                images.append({"link": f"files/{link['token']}.png", "url": value, "where": json_path(path)})
            elif recorded:
                images.append({"link": f"files/replay/{recorded['name']}", "url": value, "where": json_path(path)})
    return images


def headers_of(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def body_part(shaped: ReducedBody | None, headers: dict[str, str], size: int) -> dict[str, Any]:
    return {"headers": headers, "body": shaped.body if shaped else None,
            "preview": shaped.preview if shaped else None, "bytes": size}


class ExchangeViewer:
    def __init__(self, providers: Iterable[Provider], previews: PreviewStore | None) -> None:
        self.envelopes = {provider.name: placeholders(provider.envelope) for provider in providers}
        self.previews = previews

    def view(self, entry: JournalEntry, worker: int) -> dict[str, Any]:
        request = entry.shaped_body(self.previews)
        response = entry.shaped_response(self.previews)
        response_headers = headers_of(entry.response_headers)
        inputs = input_images(request.body) if request else []
        outputs = output_images(response.body) if response else []
        link = (LINK.fullmatch(entry.path) if entry.method in ("GET", "HEAD") and len(entry.path) <= LINK_LIMIT
                else None)
        if link and entry.status == 200:
            outputs.append({"link": f"files/{link['token']}.png", "url": entry.path, "where": "path"})
        return {
            "id": entry.id,
            "request_id": entry.request_id,
            "time": entry.time,
            "provider": entry.provider,
            "method": entry.method,
            "path": entry.path,
            "query": entry.query,
            "status": entry.status,
            "fault": entry.fault,
            "fault_source": entry.fault_source,
            "preference_applied": entry.preference_applied,
            "latency_ms": entry.latency_ms,
            "duration_ms": entry.duration_ms,
            "session": entry.session,
            "worker": worker,
            "request": body_part(request, entry.header_dict(), entry.body_bytes),
            "response": body_part(response, response_headers, entry.response_bytes),
            "error": self.error(entry, response, response_headers),
            "inputs": inputs,
            "outputs": outputs,
            "previews": self.pictures(inputs + outputs),
            "curl": curl_command(entry),
        }

    def error(self, entry: JournalEntry, response: ReducedBody | None, headers: dict[str, str]
              ) -> dict[str, Any] | None:
        if entry.status is None or entry.status < 400:
            return None
        body = response.body if response else None
        envelopes = ([self.envelopes[entry.provider]] if entry.provider in self.envelopes else []) + list(
            self.envelopes.values())
        message = code = None
        for paths in envelopes:
            message = at(body, paths.get("message", ("-",)))
            if isinstance(message, str):
                code = at(body, paths.get("code", ("-",)))
                break
        try:
            violations = orjson.loads(headers.get("x-mock-violations", "[]"))
        except orjson.JSONDecodeError:
            violations = []
        return {
            "message": message if isinstance(message, str) else None,
            "code": code if isinstance(code, str | int) else None,
            "rule": headers.get("x-mock-rule"),
            "source": headers.get("x-mock-rule-source"),
            "violations": violations if isinstance(violations, list) else [],
        }

    def pictures(self, images: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The previews of the inline images, as data URIs, by sha256: a page's requests may
        reach another worker, which does not hold them."""
        shown: dict[str, dict[str, Any]] = {}
        for image in images:
            sha256 = image.get("sha256")
            if sha256 is None or sha256 in shown:
                continue
            preview = self.previews.get(sha256) if self.previews is not None else None
            src = as_data_uri(preview) if preview else None
            shown[sha256] = {"src": src, "whole": bool(preview) and len(preview) == image.get("bytes")}
        return shown

"""Near misses (``--replay-strict``): where a request differs from the nearest recorded one.

A canonical form (``canonical.py``) is seen as its leaves, each by its place
(``body.input.messages[0].content[1].text``). Recorded requests are ranked by fingerprints,
a hash per leaf of the first ``FINGERPRINT_LEAVES``, kept for each at start-up; the nearest
one's leaves are then listed as short texts, at most ``MAX_LEAVES`` of them, so a hostile
body of many values costs a miss no more than an ordinary one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

from .canonical import MAX_DEPTH, SCALARS, is_marker, sha256

MAX_LEAVES = 256  # a near miss lists at most this many values of a request
FINGERPRINT_LEAVES = 64  # and ranks recorded requests by their first 64 (each kept in memory)


def leaves(value: Any, prefix: str = "body", limit: int = MAX_LEAVES) -> Iterator[tuple[str, Any]]:
    """Each leaf of a canonical form (a scalar, a marker, an empty object or list) with its
    place (``body.input.messages[0].content[1].text``), in document order. At most ``limit``,
    then ``("…", None)``: a hostile body of millions of values costs no more than an
    ordinary one."""
    count = 0
    stack: list[tuple[str, Any, int]] = [(prefix, value, 0)]
    while stack:
        if count >= limit:
            yield "…", None
            return
        place, node, depth = stack.pop()
        if depth > MAX_DEPTH + 2:
            node = "…"
        elif isinstance(node, dict) and node and not is_marker(node):
            children = islice(node.items(), limit + 1)
            stack.extend(reversed([(_member(place, key), item, depth + 1) for key, item in children]))
            continue
        elif isinstance(node, list) and node:
            children = islice(enumerate(node), limit + 1)
            stack.extend(reversed([(f"{place}[{index}]", item, depth + 1) for index, item in children]))
            continue
        count += 1
        yield place, node


def flatten(value: Any, prefix: str = "body", limit: int = MAX_LEAVES) -> dict[str, str]:
    """The leaves of a canonical form by their place, each as a short text: what a near miss
    lists."""
    return {place: f"more than {limit} values (the rest are not compared)" if place == "…" else _leaf_text(node)
            for place, node in leaves(value, prefix, limit)}


def fingerprint(value: Any, prefix: str = "body", limit: int = FINGERPRINT_LEAVES) -> frozenset[int]:
    """A hash per leaf (its place, type and value): two forms' fingerprints share the leaves
    they share. What a near miss ranks recorded requests by, kept for each at start-up."""
    return frozenset(hash((place, type(node).__name__, node if type(node) in SCALARS or type(node) is str
                           else _leaf_text(node))) for place, node in leaves(value, prefix, limit))


def _member(place: str, key: str) -> str:
    name = key[1:] if key.startswith("$$") else key
    return f"{place}.{name}" if place else name


def _leaf_text(node: Any) -> str:
    if isinstance(node, dict):
        return describe_marker(node) if node else "{}"
    if isinstance(node, list):
        return "[]"
    if isinstance(node, str) and len(node) > 48:  # long texts that differ late must still differ
        digest = sha256(node.encode("utf-8", "surrogatepass"))[:8]
        return f"{json.dumps(node[:40], ensure_ascii=False)[:-1]}…\" ({len(node):,} characters, sha256:{digest})"
    text = json.dumps(node, ensure_ascii=False)
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text):,} digits)"


def describe_marker(value: dict[str, Any]) -> str:
    if "$text" in value:
        text = value["$text"]
        return f"text {json.dumps(text[:40], ensure_ascii=False)}" + ("…" if len(text) > 40 else "")
    if "$bytes" in value:
        return f"bytes sha256:{str(value['$bytes'])[:12]}"
    if "link" in value:
        return f"link to image sha256:{str(value['$image'])[:12]}"
    prefix = value.get("prefix") or "bare base64"
    return f"image sha256:{str(value['$image'])[:12]} ({prefix})"


def differences(sent: Mapping[str, str], recorded: Mapping[str, str]) -> list[tuple[str, str | None, str | None]]:
    """(place, recorded, sent) for each leaf that differs; None where one has no such leaf."""
    out = [(place, recorded.get(place), text) for place, text in sent.items() if recorded.get(place) != text]
    out += [(place, text, None) for place, text in recorded.items() if place not in sent]
    return out

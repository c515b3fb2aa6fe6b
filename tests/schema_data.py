"""Where a provider's schema files say things are: the fields of its error envelope
(``x-envelope``) and a request's image count (``x-contract``), so that a test of every provider
reads and builds each one's bodies as its schemas describe them, naming none."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from conftest import ROOT


@cache
def schema(provider: str, kind: str) -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / provider / f"{kind}.json").read_text())


def _placeholder_paths(node: Any, path: tuple = ()) -> dict[str, tuple]:
    if isinstance(node, dict):
        found: dict[str, tuple] = {}
        for key, value in node.items():
            found.update(_placeholder_paths(value, (*path, key)))
        return found
    if isinstance(node, str) and node.startswith("{") and node.endswith("}"):
        return {node[1:-1]: path}
    return {}


def error_field(provider: str, body: dict[str, Any], name: str) -> Any:
    """``message``, ``code``, ``type``, ``param`` or ``request_id`` of an error body; KeyError
    if the provider's envelope has no place for it."""
    value: Any = body
    for key in _placeholder_paths(schema(provider, "error")["x-envelope"])[name]:
        value = value[key]
    return value


def has_error_field(provider: str, name: str) -> bool:
    return name in _placeholder_paths(schema(provider, "error")["x-envelope"])


def with_count(provider: str, body: dict[str, Any], n: Any) -> dict[str, Any]:
    """``body`` with its image count (``x-contract.count``, a JSON pointer) set to ``n``."""
    body = json.loads(json.dumps(body))
    *parents, last = schema(provider, "request")["x-contract"]["count"].strip("/").split("/")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = n
    return body

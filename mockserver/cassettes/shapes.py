"""Where a provider's requests and answers keep what a cassette treats specially, read from
its schema folder and the provider API, nothing named here:

* request images: every place the request schema marks with ``x-image``;
* answer images: the item keys of the image list that ``x-contract`` names (``url`` for a
  link, ``b64`` for base64), at any index of any list on the way (a drifted answer that
  splits its images across several choices is still read);
* ``created`` and the request id of an answer (``x-contract``), and where the error envelope
  (``x-envelope``) puts the request id;
* the request headers that change the answer (``Provider.vary``).

A pattern is a tuple of keys, ``"*"`` standing for any index of a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.schemas import placeholders, pointer_parts
from ..providers.api import Provider

Pattern = tuple[str, ...]
ANY = "*"
MAX_SCHEMA_DEPTH = 64


def _resolve(root: dict[str, Any], node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < MAX_SCHEMA_DEPTH:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            if part:
                target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        seen += 1
    return node


def image_patterns(schema: dict[str, Any]) -> frozenset[Pattern]:
    """Every place of a request schema marked ``x-image``."""
    found: set[Pattern] = set()

    def walk(node: Any, path: Pattern, depth: int) -> None:
        node = _resolve(schema, node)
        if not isinstance(node, dict) or depth > MAX_SCHEMA_DEPTH:
            return
        if "x-image" in node:
            found.add(path)
        for name, sub in node.get("properties", {}).items():
            walk(sub, path + (name,), depth + 1)
        for key in ("items", "additionalItems"):
            if isinstance(node.get(key), dict):
                walk(node[key], path + (ANY,), depth + 1)
        for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
            for sub in node.get(key, []):
                walk(sub, path + ((ANY,) if key == "prefixItems" else ()), depth + 1)
        for key in ("then", "else"):
            if isinstance(node.get(key), dict):
                walk(node[key], path, depth + 1)

    walk(schema, (), 0)
    return frozenset(found)


def generalised(parts: Pattern) -> Pattern:
    """A pointer with its indices made ``*``: the list at ``/output/choices/0`` may hold more."""
    return tuple(ANY if part.isdigit() else part for part in parts)


def matches(pattern: Pattern, path: tuple[str | int, ...]) -> bool:
    return len(pattern) == len(path) and all(
        (p == ANY and isinstance(step, int)) or p == step for p, step in zip(pattern, path))


@dataclass(frozen=True)
class Shape:
    """One provider as a cassette sees it."""

    name: str
    path: str
    vary: tuple[str, ...]
    request_images: frozenset[Pattern]
    link_patterns: frozenset[Pattern]  # answer: where image links are
    b64_patterns: frozenset[Pattern]  # answer: where base64 images are
    created: Pattern | None
    request_id: Pattern | None  # in a success body
    error_request_id: Pattern | None  # in an error body
    link_lifetime: int

    @classmethod
    def of(cls, provider: Provider) -> Shape:
        contract = provider.response_schema.get("x-contract", {})
        images = generalised(pointer_parts(contract["images"]) or ())
        links = frozenset({images + (ANY, contract["url"])})
        b64 = frozenset({images + (ANY, contract["b64"])}) if contract.get("b64") else frozenset()
        envelope_id = placeholders(provider.envelope).get("request_id")
        return cls(
            name=provider.name, path=provider.path, vary=tuple(h.lower() for h in provider.vary),
            request_images=image_patterns(provider.request_schema.schema), link_patterns=links, b64_patterns=b64,
            created=pointer_parts(contract.get("created")), request_id=pointer_parts(contract.get("requestId")),
            error_request_id=envelope_id, link_lifetime=provider.link_lifetime,
        )

    def is_request_image(self, path: tuple[str | int, ...]) -> bool:
        return any(matches(pattern, path) for pattern in self.request_images)

    def answer_image(self, path: tuple[str | int, ...]) -> str | None:
        """``"link"``, ``"b64"`` or None: what an answer's string at ``path`` may be."""
        if any(matches(pattern, path) for pattern in self.link_patterns):
            return "link"
        if any(matches(pattern, path) for pattern in self.b64_patterns):
            return "b64"
        return None

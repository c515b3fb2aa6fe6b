"""The providers the suite checks, and where things are in their requests, answers and errors.

Names, paths and the variables holding real keys come from the mock's provider registry
(``mockserver.providers.PROVIDERS``); everything else from each provider's schema folder:

* ``request.json``'s ``x-contract``: JSON pointers of the image count (``count``), of the
  output format with its inline and link values (``responseFormat``), of prompt rewriting
  (``promptExtend``) and of the seed (``seed``);
* ``response.json``'s ``x-contract``: the pointer of the image list (``images``), the keys
  of an item's link (``url``) and base64 (``b64``, in the form ``b64Form`` says the
  document gives: ``plain`` base64 or a ``dataUri``) and revised prompt
  (``revisedPrompt``), and the pointers of ``created``, the request id, the output ``width`` / ``height`` and
  the ``imageCount``;
* ``error.json``'s ``x-envelope``: where the message, type, code, offending field and
  request id go in an error body.

Nothing in the suite names a provider: it iterates ``NAMES`` and reads an ``Api``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

from mockserver.core.schemas import load_schema, placeholders, pointer_parts
from mockserver.providers import PROVIDERS as REGISTRY

NAMES: tuple[str, ...] = tuple(provider.name for provider in REGISTRY)
PATHS: dict[str, str] = {provider.name: provider.path for provider in REGISTRY}
KEY_ENV: dict[str, str] = {provider.name: provider.api_key_env for provider in REGISTRY}

Parts = tuple[str, ...]
MISSING: Any = object()


# --------------------------------------------------------------------------- JSON pointers


def get_at(document: Any, parts: Parts, default: Any = MISSING) -> Any:
    node = document
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def has_at(document: Any, parts: Parts) -> bool:
    return get_at(document, parts) is not MISSING


def with_value(document: dict[str, Any], parts: Parts, value: Any) -> dict[str, Any]:
    """A copy of ``document`` with ``value`` at ``parts`` (missing objects on the way created)."""
    out = copy.deepcopy(document)
    node = out
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = copy.deepcopy(value)
    return out


def without(document: dict[str, Any], parts: Parts) -> dict[str, Any]:
    """A copy of ``document`` without the value at ``parts`` (as it is when there is none)."""
    out = copy.deepcopy(document)
    parent = get_at(out, parts[:-1])
    if isinstance(parent, dict):
        parent.pop(parts[-1], None)
    return out


def label(parts: Parts, prefix: str = "") -> str:
    """``("output", "choices", "0", "message")`` -> ``output.choices[0].message``."""
    text = prefix
    for part in parts:
        if part.isdigit() or part == "[]":
            text += "[]" if part == "[]" else f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


# --------------------------------------------------------------------------- schema lookups


def resolve(root: dict[str, Any], node: Any) -> Any:
    """``node`` with ``$ref`` followed (sibling keywords kept)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            if part:
                target = target[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **rest} if rest else target
    return node


def property_at(schema: dict[str, Any], parts: Parts) -> dict[str, Any]:
    """The subschema of the value at ``parts`` as the schema declares it (its ``properties``
    and ``items``; conditional branches not applied)."""
    node: Any = resolve(schema, schema)
    for part in parts:
        if part.isdigit() and isinstance(node.get("items"), dict):
            node = resolve(schema, node["items"])
        else:
            node = resolve(schema, node.get("properties", {}).get(part, {}))
    return node if isinstance(node, dict) else {}


def source_of(node: Any, keyword: str) -> str | None:
    if not isinstance(node, dict):
        return None
    source = node.get("x-source")
    if isinstance(source, dict):
        return source.get(keyword)
    return source


def source_along(schema: dict[str, Any], parts: Parts, keyword: str = "type", default: str = "assumption") -> str:
    """The source of ``keyword`` at ``parts``: the deepest ``x-source`` on the way wins."""
    node: Any = resolve(schema, schema)
    found = source_of(node, keyword)
    for part in parts:
        if part.isdigit() and isinstance(node.get("items"), dict):
            node = resolve(schema, node["items"])
        else:
            node = resolve(schema, node.get("properties", {}).get(part, {}))
        found = source_of(node, keyword) or found
    return found or default


_IF_VALIDATORS: dict[int, tuple[Any, Any]] = {}


def if_holds(condition: dict[str, Any], value: Any) -> bool:
    """Whether an ``if`` schema accepts ``value`` (its validator kept with the schema)."""
    import jsonschema

    entry = _IF_VALIDATORS.get(id(condition))
    if entry is None or entry[0] is not condition:
        entry = _IF_VALIDATORS[id(condition)] = (condition, jsonschema.Draft202012Validator(condition))
    return entry[1].is_valid(value)


# --------------------------------------------------------------------------- one provider


@dataclass(frozen=True)
class Api:
    """Where a provider keeps what the suite sends and reads."""

    name: str
    path: str
    key_env: str
    # request
    count: Parts
    count_default: int
    format: Parts | None  # response format, where the request chooses one
    inline: str | None  # its value asking for base64 in the answer
    link: str | None  # its value asking for links
    format_default: str | None
    prompt_extend: Parts | None
    prompt_extend_default: Any
    seed: Parts | None
    # response
    images: Parts
    url_key: str
    b64_key: str | None
    b64_form: str | None  # "plain" or "dataUri": the form the document gives b64 in
    created: Parts | None
    revised_prompt_key: str | None
    request_id: Parts | None
    width: Parts | None
    height: Parts | None
    image_count: Parts | None
    # errors: placeholder name (message, type, code, param, request_id) -> where it goes
    envelope: tuple[tuple[str, Parts], ...]

    def error_field(self, name: str) -> Parts | None:
        return dict(self.envelope).get(name)

    # -- reading a request

    def requested_count(self, body: Any) -> Any:
        return get_at(body, self.count, self.count_default)

    def requested_format(self, body: Any) -> str:
        """``"inline"`` or ``"link"``: how the answer must carry the images."""
        if self.format is None:
            return "link"
        value = get_at(body, self.format, self.format_default)
        return "inline" if value == self.inline else "link"

    def with_format(self, body: dict[str, Any], which: str) -> dict[str, Any]:
        value = self.inline if which == "inline" else self.link
        if self.format is None or value is None:
            return body
        return with_value(body, self.format, value)

    # -- reading an answer

    def images_of(self, answer: Any) -> Any:
        return get_at(answer, self.images, None)


@cache
def api(name: str) -> Api:
    entry = next(provider for provider in REGISTRY if provider.name == name)
    request = load_schema(name, "request")
    response = load_schema(name, "response")
    error = load_schema(name, "error")
    ask = request.get("x-contract", {})
    answer = response.get("x-contract", {})
    count = pointer_parts(ask["count"])
    fmt = ask.get("responseFormat") or {}
    fmt_parts = pointer_parts(fmt.get("pointer"))
    prompt_extend = pointer_parts(ask.get("promptExtend"))
    return Api(
        name=name, path=entry.path, key_env=entry.api_key_env,
        count=count, count_default=property_at(request, count).get("default", 1),
        format=fmt_parts, inline=fmt.get("inline"), link=fmt.get("link"),
        format_default=property_at(request, fmt_parts).get("default", fmt.get("link")) if fmt_parts else None,
        prompt_extend=prompt_extend,
        prompt_extend_default=property_at(request, prompt_extend).get("default") if prompt_extend else None,
        seed=pointer_parts(ask.get("seed")),
        images=pointer_parts(answer["images"]), url_key=answer["url"], b64_key=answer.get("b64"),
        b64_form=answer.get("b64Form"),
        created=pointer_parts(answer.get("created")), revised_prompt_key=answer.get("revisedPrompt"),
        request_id=pointer_parts(answer.get("requestId")), width=pointer_parts(answer.get("width")),
        height=pointer_parts(answer.get("height")), image_count=pointer_parts(answer.get("imageCount")),
        envelope=tuple(sorted(placeholders(error["x-envelope"]).items())),
    )

"""Loading the files in ``schemas/`` and validating request bodies against them.

Validation is done by a compiled validator (jsonschema-rs): a valid request costs a few
microseconds. Only when a body is invalid do we walk the errors and the schema to name the
field, pick the clearest message (``x-message``), the error kind (``x-error``) and the
rule's source (``x-source``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

from .formats import describe_images_in
from .references import ImageRules
from .resources import data_dir

MESSAGE_LIMIT = 300


def schema_dir() -> Path:
    """The folder holding one sub-folder of schemas per provider."""
    return data_dir("_schemas", "schemas")


@cache
def load_schema(provider: str, name: str) -> dict[str, Any]:
    with open(schema_dir() / provider / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


def provider_settings() -> dict[str, dict[str, Any]]:
    """Each provider folder's own settings (the ``x-settings`` keyword of its request schema)."""
    return {
        folder.name: load_schema(folder.name, "request").get("x-settings", {})
        for folder in sorted(schema_dir().iterdir())
        if (folder / "request.json").is_file()
    }


def json_path(parts: Sequence[str | int]) -> str:
    """``['input', 'messages', 0, 'content']`` -> ``input.messages[0].content``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def truncate(text: str, limit: int = MESSAGE_LIMIT) -> str:
    # Validator messages quote the offending value, which may be megabytes of base64.
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pointer_parts(pointer: str | None) -> tuple[str, ...] | None:
    """RFC 6901: ``"/output/choices/0"`` -> ``("output", "choices", "0")``; None stays None."""
    if pointer is None:
        return None
    if pointer in ("", "/"):
        return ()
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in pointer.lstrip("/").split("/"))


def placeholders(template: Any, path: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Where each ``"{name}"`` placeholder of an ``x-envelope`` template is."""
    found: dict[str, tuple[str, ...]] = {}
    if isinstance(template, dict):
        for key, value in template.items():
            found.update(placeholders(value, (*path, key)))
    elif isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        found[template[1:-1]] = path
    return found


def resolve_pointer(schema: dict[str, Any], pointer: str) -> Any:
    node: Any = schema
    for part in pointer.lstrip("#/").split("/"):
        if part:
            node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def annotation(node: dict[str, Any], name: str, keyword: str) -> str | None:
    """An ``x-source`` or ``x-message``: one string for the whole subschema, or an object
    with one entry per keyword."""
    value = node.get(name)
    if isinstance(value, dict):
        return value.get(keyword)
    return value


@dataclass(frozen=True)
class Violation:
    """One broken rule: which field, what was expected, and where the rule comes from."""

    param: str
    message: str
    keyword: str
    source: str
    error_kind: str = "invalid_parameter"

    def describe(self) -> str:
        return f"{self.param}: {self.message}" if self.param else self.message

    def as_dict(self) -> dict[str, str]:
        return {"param": self.param, "message": self.message, "keyword": self.keyword, "source": self.source}


def violation_from_error(schema: dict[str, Any], error: jsonschema_rs.ValidationError) -> Violation:
    keyword = error.kind.name
    parts = list(error.instance_path)
    if keyword == "required":
        parts.append(error.kind.property)
    elif keyword == "additionalProperties" and len(error.kind.unexpected) == 1:
        parts.append(error.kind.unexpected[0])

    # Walk from the root to the failing keyword; the deepest annotation wins.
    message, error_kind, source = None, "invalid_parameter", None
    node: Any = schema
    for step in error.schema_path:
        if isinstance(node, dict):
            message = annotation(node, "x-message", keyword) or message
            error_kind = node.get("x-error", error_kind)
            source = annotation(node, "x-source", keyword) or source
        node = node[step]
    if keyword == "required":
        message = "required field is missing"
    elif keyword == "additionalProperties":
        message = "is not a known field (strict mode rejects unknown fields)"
    return Violation(
        param=json_path(parts),
        message=truncate(describe_images_in(message or error.message)),
        keyword=keyword,
        source=source or "assumption",
        error_kind=error_kind,
    )


def objects_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in a JSON document, each before its children, so a caller may change
    an object and have the walk see what it added."""
    if isinstance(node, dict):
        yield node
        for value in list(node.values()):
            yield from objects_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from objects_in(value)


def strict_variant(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every ``x-strict`` block applied and unknown fields forbidden in every
    object type it declares (not in conditions such as ``if``/``then``, which only narrow
    an object declared elsewhere)."""
    strict = copy.deepcopy(schema)
    for node in objects_in(strict):
        node.update(node.pop("x-strict", {}))
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
    return strict


class RequestSchema:
    """A provider's request schema, compiled twice: as documented, and strict."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.strict_schema = strict_variant(schema)
        self._lenient = jsonschema_rs.validator_for(schema)
        self._strict = jsonschema_rs.validator_for(self.strict_schema)

    def property(self, pointer: str) -> dict[str, Any]:
        """The subschema at a JSON pointer, with ``$ref`` followed."""
        node = resolve_pointer(self.schema, pointer)
        while "$ref" in node:
            node = resolve_pointer(self.schema, node["$ref"])
        return node

    def defaults_at(self, pointer: str) -> dict[str, Any]:
        """The defaults of the properties of the object at a JSON pointer (``#`` for the top)."""
        node = self.property(pointer)
        return {name: prop["default"] for name, prop in node.get("properties", {}).items() if "default" in prop}

    def image_rules(self, pointer: str) -> ImageRules:
        """The ``x-image`` rules of the image reference at a JSON pointer."""
        return ImageRules.from_schema(self.property(pointer)["x-image"])

    def check(self, body: Any, strict: bool) -> tuple[list[Violation], list[Violation]]:
        """What rejects the body, and (outside strict mode) what strict mode would reject in
        a body the documented schema accepts, to report as warnings."""
        # The strict schema only adds constraints, so a body it accepts (the usual case)
        # is settled by one call.
        if self._strict.is_valid(body):
            return [], []
        if strict:
            return list(_violations(self.strict_schema, self._strict, body)), []
        if self._lenient.is_valid(body):
            return [], list(_violations(self.strict_schema, self._strict, body))
        return list(_violations(self.schema, self._lenient, body)), []

    def violations(self, body: Any, strict: bool) -> list[Violation]:
        return self.check(body, strict)[0]


TOO_DEEP = Violation(
    param="", message="the request body is nested too deeply to be checked", keyword="depth", source="assumption",
    error_kind="invalid_json",
)


def _violations(schema: dict[str, Any], validator: jsonschema_rs.Validator, body: Any) -> Iterator[Violation]:
    seen = set()
    try:
        for error in validator.iter_errors(body):
            violation = violation_from_error(schema, error)
            if violation.describe() not in seen:
                seen.add(violation.describe())
                yield violation
    except ValueError:
        # Reporting an error about a value nested a few hundred levels deep exceeds the
        # validator's recursion limit (is_valid itself copes). Checked here, not by walking
        # every body, so valid requests pay nothing for it.
        yield TOO_DEEP

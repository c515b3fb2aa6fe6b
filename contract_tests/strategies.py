"""Hypothesis strategies for valid requests, built by reading the request schemas.

Nothing here repeats a range, an enum or a default: every number comes from the schema
files (``minimum``, ``maxContains``, ``x-size.minPixels``, ``x-image.recommendedSide``...).
The builder covers the keywords the schemas use and every drawn body is checked against
the schema (and the ``x-size`` / ``x-image`` rules) before use, so a gap in the builder
shows up as an error, never as an invalid "valid" request.

Why not hypothesis-jsonschema: version 0.23.1, installed here, fails on every object
schema with the installed Hypothesis (``'many' object has no attribute 'more'``); it also
does not know draft 2020-12's ``minContains`` / ``maxContains`` (the powertokens content
rules), and it would fill image fields with random strings rather than real images.

Choices the schemas leave open, made so that the *simplest* example (the one Hypothesis
tries first, and the only one a live run with a small budget may send) is a sensible,
cheap request:

* only the documented fields are sent (unknown fields have a rule of their own);
* text is drawn from letters, digits, spaces, punctuation and a few CJK characters, at
  most 60 characters (no control characters or lone surrogates a real service may refuse);
* input images are real images in an accepted format, each side within the upstream
  recommended range (its lower part, to keep requests small), sent as a data URI or,
  where allowed, bare base64; ``http(s)`` references (never fetched by the mock) only
  when the target is the mock, since a real provider would try to download them;
* sizes are square-ish (each side between the square roots of the pixel limits) first,
  with any aspect ratio the pixel range allows as the alternative.
"""

from __future__ import annotations

import base64
import math
import string
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import jsonschema
from hypothesis import strategies as st

from mockserver.core.schemas import load_schema, strict_variant

from .catalogue import resolve
from .semantics import (
    data_uri,
    image_problems,
    make_image,
    size_problems,
    writable_formats,
)

TEXT_ALPHABET = string.ascii_letters + string.digits + " .,;:!?-'()" + "山水画猫狗日落"
TEXT_MAX = 60
INT_FALLBACK = 2**31 - 1
EXAMPLE_HOST = "https://example.com/contract-tests"
SIDE_STEP = 64
COLOURS = ((200, 30, 60), (20, 120, 220), (240, 200, 40), (30, 30, 30), (250, 250, 250), (40, 160, 90))


class Body(dict):
    """A request body whose repr (in Hypothesis's "Falsifying example" notes and pytest's
    output) shows image data as hashes and sizes instead of megabytes of base64."""

    def __repr__(self) -> str:
        import json

        from .report import redact

        text = json.dumps(redact(dict(self)), ensure_ascii=False, default=str)
        return text if len(text) <= 800 else text[:800] + f"… <{len(text)} chars>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True)
class Mode:
    provider: str
    strict: bool = False
    mock: bool = True  # the target is the mock: URL image references are allowed


@cache
def request_schema(provider: str, strict: bool) -> dict[str, Any]:
    schema = load_schema(provider, "request")
    return strict_variant(schema) if strict else schema


@cache
def validator(provider: str, strict: bool) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(request_schema(provider, strict))


def image_strategy(rules: dict[str, Any], mode: Mode) -> st.SearchStrategy[str]:
    formats = writable_formats(rules["formats"])
    low = rules["recommendedSide"]["minimum"]
    high = min(rules["recommendedSide"]["maximum"], low + low // 2)
    # Sides on a 64 px grid and a few colours: the encoded images are cached and reused,
    # which keeps drawing a request cheap; the range itself is the schema's.
    side = st.integers(0, (high - low) // SIDE_STEP).map(lambda k: low + SIDE_STEP * k)
    colour = st.sampled_from(COLOURS)

    formats_st = st.sampled_from(formats)
    encodings = st.sampled_from(["data"] + (["bare"] if rules.get("bareBase64") else []))

    @st.composite
    def inline(draw) -> str:
        fmt = draw(formats_st)
        width, height, paint = draw(side), draw(side), draw(colour)
        return encoded_image(fmt, width, height, paint, draw(encodings) == "bare")

    if mode.mock and rules.get("schemes"):
        url = st.builds(lambda scheme, name: f"{EXAMPLE_HOST.replace('https', scheme, 1)}/{name}.png",
                        st.sampled_from(rules["schemes"]), st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True))
        return st.one_of(inline(), url)
    return inline()


@lru_cache(maxsize=1024)
def encoded_image(fmt: str, width: int, height: int, colour: tuple[int, int, int], bare: bool) -> str:
    data = make_image(fmt, width, height, colour)
    return base64.b64encode(data).decode() if bare else data_uri(data, fmt)


def size_strategy(rules: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = rules["minPixels"], rules["maxPixels"]
    seps = st.sampled_from(rules["separators"])

    @st.composite
    def square_ish(draw) -> str:
        width = draw(st.integers(math.isqrt(low), max(math.isqrt(low), math.isqrt(high))))
        height = draw(st.integers(-(-low // width), high // width))
        return f"{width}{draw(seps)}{height}"

    @st.composite
    def any_ratio(draw) -> str:
        width = draw(st.integers(1, high))
        height = draw(st.integers(max(1, -(-low // width)), high // width))
        return f"{width}{draw(seps)}{height}"

    return st.one_of(square_ish(), any_ratio())


def text_strategy(node: dict[str, Any]) -> st.SearchStrategy[str]:
    low = node.get("minLength", 0)
    high = max(low, min(node.get("maxLength", TEXT_MAX), TEXT_MAX))
    return st.text(alphabet=TEXT_ALPHABET, min_size=low, max_size=high)


class Builder:
    """A strategy for any value a (sub)schema accepts, for the keywords these schemas use."""

    def __init__(self, root: dict[str, Any], mode: Mode) -> None:
        self.root = root
        self.mode = mode

    def build(self, node: Any) -> st.SearchStrategy[Any]:
        node = resolve(self.root, node)
        if node is True or node == {}:
            return st.none()
        if "allOf" in node and node.get("type") != "array":
            # A scalar's allOf only narrows it (an enum kept apart to carry its own x-error).
            merged = {k: v for k, v in node.items() if k != "allOf"}
            for part in node["allOf"]:
                merged.update(resolve(self.root, part))
            return self.build(merged)
        if "const" in node:
            return st.just(node["const"])
        if "enum" in node:
            return st.sampled_from(node["enum"])
        if "anyOf" in node:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return st.one_of([self.build({**rest, **resolve(self.root, branch)}) for branch in node["anyOf"]])
        if "x-image" in node:
            return image_strategy(node["x-image"], self.mode)
        if "x-size" in node:
            return size_strategy(node["x-size"])
        kind = node.get("type")
        if isinstance(kind, list):
            return st.one_of([self.build({**node, "type": t}) for t in kind])
        if kind == "integer":
            return st.integers(node.get("minimum", -INT_FALLBACK), node.get("maximum", INT_FALLBACK))
        if kind == "number":
            low, high = node.get("minimum", -1e9), node.get("maximum", 1e9)
            return st.one_of(
                st.integers(math.ceil(low), math.floor(high)),
                st.floats(low, high, allow_nan=False, allow_infinity=False),
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "string":
            if "pattern" in node:
                return st.from_regex(node["pattern"]).filter(
                    lambda s: node.get("minLength", 0) <= len(s) <= node.get("maxLength", 10**9))
            return text_strategy(node)
        if kind == "array":
            return self.array(node)
        if kind == "object" or "properties" in node:
            return self.object(node)
        raise NotImplementedError(f"no strategy for schema {node!r}")

    def array(self, node: dict[str, Any]) -> st.SearchStrategy[list]:
        items = node.get("items", {})
        clauses = [resolve(self.root, part) for part in node.get("allOf", []) if "contains" in resolve(self.root, part)]
        if not clauses:
            low = node.get("minItems", 0)
            high = node.get("maxItems", low + 3)
            return st.lists(self.build(items), min_size=low, max_size=high)

        parts = []
        for clause in clauses:
            contains = resolve(self.root, clause["contains"])
            low = clause.get("minContains", 1)
            high = clause.get("maxContains", low + 2)
            parts.append(st.lists(self.build(self.merge(resolve(self.root, items), contains)),
                                  min_size=low, max_size=high))

        @st.composite
        def with_contains(draw) -> list:
            out = [item for part in parts for item in draw(part)]
            # a shuffle that shrinks to the original order
            order = draw(st.lists(st.integers(0, 7), min_size=len(out), max_size=len(out)))
            return [out[i] for _, i in sorted(zip(order, range(len(out))))]

        return with_contains()

    def merge(self, items: dict[str, Any], contains: dict[str, Any]) -> dict[str, Any]:
        merged = dict(items)
        merged["required"] = sorted(set(items.get("required", [])) | set(contains.get("required", [])))
        return merged

    def object(self, node: dict[str, Any]) -> st.SearchStrategy[dict]:
        props = node.get("properties", {})
        required = node.get("required", [])
        optional = {
            name: self.build(sub) for name, sub in props.items()
            if name not in required and not _forbidden(resolve(self.root, sub))
        }
        strategy = st.fixed_dictionaries({name: self.build(props[name]) for name in required}, optional=optional)
        low, high = node.get("minProperties", 0), node.get("maxProperties")
        if low or high is not None:
            strategy = strategy.filter(lambda d: low <= len(d) <= (high if high is not None else len(d)))
        return strategy


def _forbidden(node: Any) -> bool:
    return node is False or (isinstance(node, dict) and node.get("not") in ({}, True))


def semantic_problems(body: Any, provider: str, strict: bool) -> list[tuple[str, str]]:
    """(location, rule) for every x-size / x-image rule the body breaks."""
    schema = request_schema(provider, strict)
    problems: list[tuple[str, str]] = []

    def walk(node: Any, value: Any, where: str) -> None:
        node = resolve(schema, node)
        if not isinstance(node, dict):
            return
        if "x-size" in node:
            problems.extend((where, p) for p in size_problems(value, node["x-size"]))
        if "x-image" in node:
            problems.extend((where, p) for p in image_problems(value, node["x-image"], strict))
        if isinstance(value, dict):
            for name, sub in node.get("properties", {}).items():
                if name in value:
                    walk(sub, value[name], f"{where}.{name}" if where else name)
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            for index, item in enumerate(value):
                walk(node["items"], item, f"{where}[{index}]")

    walk(schema, body, "")
    return problems


@cache
def valid_requests(mode: Mode) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies the provider must accept: valid against the request schema (strict variant
    in strict mode) and breaking no x-size / x-image rule."""
    schema = request_schema(mode.provider, mode.strict)
    check = validator(mode.provider, mode.strict)
    return Builder(schema, mode).build(schema).filter(
        lambda body: check.is_valid(body) and not semantic_problems(body, mode.provider, mode.strict)).map(Body)

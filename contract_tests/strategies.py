"""Hypothesis strategies for valid requests, built by reading the request schemas.

Nothing here repeats a range, an enum or a default: every number comes from the schema
files (``minimum``, ``maxContains``, ``x-size.minPixels``, ``x-image.recommendedSide``...).
The builder covers the keywords the schemas use and every drawn body is checked against
the schema (and the ``x-size`` / ``x-image`` rules) before use, so a gap in the builder
shows up as an error, never as an invalid "valid" request.

Why not hypothesis-jsonschema: version 0.23.1, installed here, fails on every object
schema with the installed Hypothesis (``'many' object has no attribute 'more'``); it also
does not know draft 2020-12's ``minContains`` / ``maxContains`` (the image and text content
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
* sizes are square-ish (each side between the square roots of the pixel limits, and
  within the side limits) first, with any aspect ratio the ranges allow as the alternative;
* conditional rules (``allOf`` of ``if`` / ``then``, say one model's own limits) are honoured
  by drawing one case per branch: the object narrowed by the branch's ``if`` and ``then``
  (the first branch first), plus the values no branch's condition covers, if any.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import string
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import jsonschema
from hypothesis import reject
from hypothesis import strategies as st

from mockserver.core.schemas import load_schema, strict_variant

from .catalogue import Condition, resolve
from .providers import if_holds
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
    # the schema path of an allOf if/then branch whose condition every request must meet
    # (a conditional rule's ``rule.condition.branch``); () for none
    branch: tuple[Any, ...] = ()


@cache
def request_schema(provider: str, strict: bool) -> dict[str, Any]:
    schema = load_schema(provider, "request")
    return strict_variant(schema) if strict else schema


@cache
def validator(provider: str, strict: bool) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(request_schema(provider, strict))


# --------------------------------------------------------------------------- narrowing schemas

UPPER = {"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains"}
LOWER = {"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains"}
EMPTY = "x-empty"  # marks a subschema no value satisfies (an enum narrowed to nothing)


def narrow(root: dict[str, Any], base: Any, extra: Any) -> dict[str, Any]:
    """A subschema accepting what both ``base`` and ``extra`` accept, for the keywords these
    schemas use: properties narrowed one by one, required lists joined, bounds tightened,
    enums intersected, anything else taken from ``extra``."""
    base, extra = resolve(root, base), resolve(root, extra)
    if extra is True or extra == {} or not isinstance(extra, dict):
        return base if isinstance(base, dict) else {}
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in extra.items():
        if key == "properties":
            props = dict(out.get("properties", {}))
            for name, sub in value.items():
                props[name] = narrow(root, props[name], sub) if name in props else sub
            out["properties"] = props
        elif key == "items" and "items" in out:
            out["items"] = narrow(root, out["items"], value)
        elif key == "required":
            out["required"] = list(dict.fromkeys(list(out.get("required", [])) + list(value)))
        elif key in UPPER:
            out[key] = min(out[key], value) if key in out else value
        elif key in LOWER:
            out[key] = max(out[key], value) if key in out else value
        elif key in ("enum", "const"):
            values = value if key == "enum" else [value]
            allowed = [v for v in values if ("enum" not in out or v in out["enum"])
                       and ("const" not in out or v == out["const"])]
            out.pop("const", None)
            out["enum"] = allowed
            if not allowed:
                out[EMPTY] = True
        elif key == "allOf":
            out["allOf"] = list(out.get("allOf", [])) + list(value)
        else:
            out[key] = value
    return out


def is_empty(root: dict[str, Any], node: Any) -> bool:
    """No value satisfies ``node``: it, or a property it requires, is narrowed to nothing."""
    node = resolve(root, node)
    if not isinstance(node, dict):
        return node is False
    if node.get(EMPTY):
        return True
    props = node.get("properties", {})
    return any(is_empty(root, props[name]) for name in node.get("required", []) if name in props)


def with_condition(root: dict[str, Any], branch: tuple[Any, ...]) -> dict[str, Any]:
    """The schema with the ``if`` of the ``allOf`` entry at ``branch`` (a schema path such as
    ``("allOf", 2)``) made part of the object it is about: every value it accepts meets it."""

    def rebuild(node: Any, steps: tuple[Any, ...]) -> Any:
        node = resolve(root, node)
        if not steps:
            return narrow(root, node, resolve(root, node["allOf"][branch[-1]])["if"])
        out = list(node) if isinstance(node, list) else dict(node)
        out[steps[0]] = rebuild(out[steps[0]], steps[1:])
        return out

    return rebuild(copy.deepcopy(root), branch[:-2])


def instance_of(schema_path: tuple[Any, ...]) -> tuple[Any, ...]:
    """The instance a schema path is about (``properties`` names and ``[]`` for ``items``)."""
    out: list[Any] = []
    steps = list(schema_path)
    while steps:
        step = steps.pop(0)
        if step == "properties" and steps:
            out.append(steps.pop(0))
        elif step == "items":
            out.append("[]")
        elif step in ("allOf", "anyOf", "oneOf") and steps:
            steps.pop(0)
    return tuple(out)


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
    low_side, high_side = max(1, rules.get("minSide", 1)), rules.get("maxSide")
    low, high = rules.get("minPixels", 1), rules.get("maxPixels")
    if high is None:
        high = (high_side or 4096) ** 2
    if high_side is None:
        high_side = high // low_side
    seps = st.sampled_from(rules["separators"])

    def heights(width: int) -> tuple[int, int]:
        return max(low_side, -(-low // width)), min(high_side, high // width)

    @st.composite
    def square_ish(draw) -> str:
        root_low = max(low_side, math.isqrt(low))
        width = draw(st.integers(root_low, max(root_low, min(high_side, math.isqrt(high)))))
        h_low, h_high = heights(width)
        if h_low > h_high:
            reject()
        return f"{width}{draw(seps)}{draw(st.integers(h_low, h_high))}"

    @st.composite
    def any_ratio(draw) -> str:
        width = draw(st.integers(max(low_side, -(-low // high_side)), min(high_side, high // low_side)))
        h_low, h_high = heights(width)
        if h_low > h_high:
            reject()
        return f"{width}{draw(seps)}{draw(st.integers(h_low, h_high))}"

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
        if is_empty(self.root, node):
            return st.nothing()
        conditional = [part for part in node.get("allOf", []) if "if" in resolve(self.root, part)]
        if conditional:
            return self.cases(node, conditional)
        if "allOf" in node and node.get("type") != "array":
            # A scalar's allOf only narrows it (an enum kept apart to carry its own x-error).
            merged = {k: v for k, v in node.items() if k != "allOf"}
            for part in node["allOf"]:
                merged = narrow(self.root, merged, part)
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
                return st.from_regex(node["pattern"], fullmatch=True).filter(
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

    def cases(self, node: dict[str, Any], conditional: list[Any]) -> st.SearchStrategy[Any]:
        """One strategy per if/then branch (the value narrowed by its ``if`` and ``then``), and
        one for the values no branch's condition covers, where there are such values."""
        base = {k: v for k, v in node.items() if k != "allOf"}
        rest = [part for part in node["allOf"] if "if" not in resolve(self.root, part)]
        if rest:
            base["allOf"] = rest
        branches = [resolve(self.root, part) for part in conditional]
        options = []
        for part in branches:
            case = narrow(self.root, narrow(self.root, base, part["if"]), part.get("then", {}))
            if not is_empty(self.root, case):
                options.append(self.build(case))
        uncovered = self.uncovered(base, [part["if"] for part in branches])
        if uncovered is not None:
            options.append(uncovered)
        return st.one_of(options) if options else st.nothing()

    def uncovered(self, base: dict[str, Any], conditions: list[dict[str, Any]]) -> st.SearchStrategy[Any] | None:
        """Values none of ``conditions`` holds for: where each condition pins one property to
        values of an enum, that property's other values; otherwise any value, filtered."""
        names = {name for cond in conditions for name in cond.get("properties", {})}
        simple = len(names) == 1 and all(
            set(cond) <= {"properties", "required"} and all("enum" in s or "const" in s
                                                            for s in cond["properties"].values())
            for cond in conditions)
        if simple:
            (name,) = names
            prop = self.build_node(base.get("properties", {}).get(name, {}))
            if "enum" in prop:
                covered = {json_key(v) for cond in conditions for sub in cond["properties"].values()
                           for v in sub.get("enum", [sub.get("const")])}
                left = [v for v in prop["enum"] if json_key(v) not in covered]
                if not left:
                    return None
                case = narrow(self.root, base, {"properties": {name: {"enum": left}}})
                return None if is_empty(self.root, case) else self.build(case)
        return self.build(base).filter(lambda value: not any(if_holds(cond, value) for cond in conditions))

    def build_node(self, node: Any) -> dict[str, Any]:
        """A subschema with its (non-conditional) allOf merged in."""
        node = resolve(self.root, node)
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for part in node.get("allOf", []):
            if "if" not in resolve(self.root, part):
                merged = narrow(self.root, merged, part)
        return merged

    def merge(self, items: dict[str, Any], contains: dict[str, Any]) -> dict[str, Any]:
        merged = dict(items)
        merged["required"] = sorted(set(items.get("required", [])) | set(contains.get("required", [])))
        return merged

    def object(self, node: dict[str, Any]) -> st.SearchStrategy[dict]:
        props = node.get("properties", {})
        required = node.get("required", [])
        optional = {
            name: self.build(sub) for name, sub in props.items()
            if name not in required and not _forbidden(resolve(self.root, sub)) and not is_empty(self.root, sub)
        }
        strategy = st.fixed_dictionaries({name: self.build(props[name]) for name in required}, optional=optional)
        low, high = node.get("minProperties", 0), node.get("maxProperties")
        if low or high is not None:
            strategy = strategy.filter(lambda d: low <= len(d) <= (high if high is not None else len(d)))
        return strategy


def _forbidden(node: Any) -> bool:
    return node is False or (isinstance(node, dict) and node.get("not") in ({}, True))


def json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def semantic_problems(body: Any, provider: str, strict: bool) -> list[tuple[str, str]]:
    """(location, rule) for every x-size / x-image rule the body breaks (the x-size of an
    if/then branch only where its condition holds)."""
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
        for part in node.get("allOf", []):
            part = resolve(schema, part)
            if "if" not in part:
                walk(part, value, where)
            elif if_holds(part["if"], value):
                walk(part.get("then", {}), value, where)
            elif "else" in part:
                walk(part["else"], value, where)
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
    in strict mode) and breaking no x-size / x-image rule; with ``mode.branch``, meeting that
    branch's condition too."""
    schema = request_schema(mode.provider, mode.strict)
    check = validator(mode.provider, mode.strict)
    source = with_condition(schema, mode.branch) if mode.branch else schema
    condition = None
    if mode.branch:
        holder: Any = schema
        for step in mode.branch[:-2]:
            holder = resolve(schema, holder)[step]
        part = resolve(schema, resolve(schema, holder)["allOf"][mode.branch[-1]])
        condition = Condition("", mode.branch, instance_of(mode.branch[:-2]), part["if"])

    def meets(body: Any) -> bool:
        return condition is None or condition.holds(body)

    return Builder(source, mode).build(source).filter(
        lambda body: check.is_valid(body) and meets(body)
        and not semantic_problems(body, mode.provider, mode.strict)).map(Body)

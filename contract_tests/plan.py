"""The plan for paid requests: per provider, a few boundary requests derived from the
schemas, sent before any drawn example and checked by every rule about a valid answer.

Hypothesis tries the simplest example first (one input image, every optional field at its
default), and on a live target each paid rule sends one example: left to drawing, a run
never asks for several images, the other response format, a size at its bounds, the most
input images. Those are the requests most likely to show drift, so the plan asks for them
on purpose. Every value comes from the schema files:

* the image count: ``minimum`` / ``maximum`` of the property at ``x-contract.count``, as
  the case (below) narrows it;
* response formats: ``x-contract.responseFormat`` (its ``inline`` and ``link`` values);
* sizes: the ``x-size`` of the size field that applies (``minPixels`` / ``maxPixels``,
  ``minSide`` / ``maxSide``): the lower bound, the upper bound, and a 3:2 size between
  them; where no size field applies and the output follows an input image
  (``x-output-size``), a 3:2 input image instead;
* input images: ``maxContains`` of the ``contains`` clause counting the image items (one
  image where the request has a single image field);
* optional fields: the properties not ``required`` (a forbidden one, ``not: {}``, is left
  out), each given a valid value at an edge of its range or other than its default.

Where the request schema has ``if`` / ``then`` branches (one model family's own limits),
each branch is a case with its own items, named with its condition like the rules are:
``n-max(model=...)``. The items, in the order of their value (a budget smaller than the
plan sends the first ones), each case's item of one kind before the next kind:

1. ``n-max``: the count at its maximum: several images in one answer (the count, repeats,
   a field on each image);
2. ``non-square``: a 3:2 size (or input image), the inline response format, a middle count;
3. ``size-max``: the size at its upper bound;
4. ``images-max``: the most input images, with the size at its lower bound (``size-min``
   where the number of images is fixed);
5. ``all-optional``: every optional field given (the count at its minimum, links asked
   for by name, the other orientation and size separator, prompt rewriting on by name);
6. ``all-absent``: only the required fields, for the first case: the request Hypothesis
   draws first, so on a live target answered from the cache for nothing. (Another case's
   items leave every optional field but one absent: its own would add one request for
   little.)

Items that a case cannot have (one image count, no size field...) are listed in
``Plan.left_out`` with the reason; identical bodies are sent once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from .catalogue import describe_condition
from .checks import output_size_rule
from .providers import Parts, api, get_at, has_at, if_holds, label, resolve, with_value
from .semantics import size_problems, writable_formats
from .strategies import (
    COLOURS,
    Body,
    Mode,
    encoded_image,
    is_empty,
    narrow,
    request_schema,
    semantic_problems,
    valid_requests,
    validator,
)

KINDS = ("n-max", "non-square", "size-max", "images-max", "size-min", "all-optional", "all-absent")
SIZE_GRID = 64  # the middle size is rounded down to a multiple of this
WIDE = (3, 2)  # the non-square aspect ratio
TEXT = "blurry, low quality"  # an optional free-text field's value


@dataclass(frozen=True)
class PlanItem:
    provider: str
    kind: str  # one of KINDS
    case: str  # the branch's condition ("model=a,b"), "" where the schema has no branches
    covers: tuple[str, ...]  # what it asks for, in words
    body: Body

    @property
    def name(self) -> str:
        return self.kind + (f"({self.case})" if self.case else "")

    @property
    def id(self) -> str:
        return f"{self.provider}::plan::{self.name}"


@dataclass(frozen=True)
class Plan:
    provider: str
    items: tuple[PlanItem, ...]
    left_out: tuple[str, ...]  # "size-max(model=x): no size field applies", ...

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Case:
    label: str
    branch: tuple[Any, ...]  # schema path of the allOf if/then entry, () for none
    schema: dict[str, Any]  # the request schema narrowed by the branch's if and then
    condition: dict[str, Any] | None


# --------------------------------------------------------------------------- reading the schema


def cases(provider: str, strict: bool) -> list[Case]:
    """One case per ``if`` / ``then`` branch of the request schema (the whole schema where
    it has none). Values no branch covers are left to drawn examples."""
    root = request_schema(provider, strict)
    base = {k: v for k, v in root.items() if k != "allOf"}
    rest = [part for part in root.get("allOf", []) if "if" not in resolve(root, part)]
    if rest:
        base["allOf"] = rest
    branches = [(index, resolve(root, part)) for index, part in enumerate(root.get("allOf", []))
                if "if" in resolve(root, part)]
    if not branches:
        return [Case("", (), base, None)]
    out = []
    for index, part in branches:
        schema = narrow(root, narrow(root, base, part["if"]), part.get("then", {}))
        if not is_empty(root, schema):
            out.append(Case(describe_condition(part["if"], f"allOf[{index}]"), ("allOf", index), schema, part["if"]))
    return out


def merged(root: dict[str, Any], node: Any) -> dict[str, Any]:
    """A subschema with its plain ``allOf`` parts merged in (not ``if`` or ``contains``)."""
    node = resolve(root, node)
    if not isinstance(node, dict):
        return {}
    out = {k: v for k, v in node.items() if k != "allOf"}
    for part in node.get("allOf", []):
        part = resolve(root, part)
        if "if" not in part and "contains" not in part:
            out = narrow(root, out, part)
    return out


def forbidden(node: Any) -> bool:
    return node is False or (isinstance(node, dict) and node.get("not") in ({}, True))


def declared(case: Case, parts: Parts) -> dict[str, Any]:
    """The subschema of the value at ``parts`` in this case."""
    node: Any = case.schema
    for part in parts:
        node = merged(case.schema, node).get("properties", {}).get(part, {})
    return merged(case.schema, node)


@dataclass(frozen=True)
class SizeField:
    parts: Parts
    rules: dict[str, Any]  # its x-size

    def text(self, width: int, height: int, separator: str | None = None) -> str:
        return f"{width}{separator or self.rules['separators'][0]}{height}"


def size_field(case: Case) -> SizeField | None:
    """The x-size field that applies in this case (None where there is none, or the case
    forbids it)."""
    def walk(node: Any, parts: Parts) -> SizeField | None:
        node = merged(case.schema, node)
        if forbidden(node):
            return None
        if "x-size" in node:
            return SizeField(parts, node["x-size"])
        for name, sub in node.get("properties", {}).items():
            found = walk(sub, parts + (name,))
            if found is not None:
                return found
        return None

    return walk(case.schema, ())


def size_points(rules: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """``lower`` and ``upper`` (square, at the bounds) and ``wide`` (3:2, near the middle of
    the range) sizes for an x-size."""
    min_side, max_side = max(1, rules.get("minSide", 1)), rules.get("maxSide")
    low = max(min_side, math.isqrt(rules.get("minPixels", 1) - 1) + 1)
    points = {"lower": (low, low)}
    uppers = [x for x in (math.isqrt(rules["maxPixels"]) if "maxPixels" in rules else None, max_side) if x]
    high = min(uppers) if uppers else None
    if high is not None and high > low:
        points["upper"] = (high, high)
    middle = max(low, (math.isqrt(low * high) if high else 2 * low) // SIZE_GRID * SIZE_GRID)
    points["wide"] = (middle * WIDE[0] // WIDE[1], middle)
    return {name: size for name, size in points.items()
            if not size_problems(f"{size[0]}{rules['separators'][0]}{size[1]}", rules)}


@dataclass(frozen=True)
class ImageSlot:
    """Where a request's input images are: a single image field, or an array whose
    ``contains`` clause counts the items holding ``key``."""

    parts: tuple[Any, ...]  # concrete path (indices as ints)
    rules: dict[str, Any]  # x-image
    key: str | None = None  # the array case: the item key holding the image
    most: int | None = None  # maxContains


def image_places(case: Case, body: Any) -> tuple[list[ImageSlot], list[ImageSlot]]:
    """(each input image of ``body``, each array that counts image items)."""
    root = case.schema
    images: list[ImageSlot] = []
    arrays: list[ImageSlot] = []

    def walk(node: Any, value: Any, path: tuple[Any, ...]) -> None:
        node = resolve(root, node)
        if not isinstance(node, dict):
            return
        if "x-image" in node and isinstance(value, str):
            images.append(ImageSlot(path, node["x-image"]))
        for part in node.get("allOf", []):
            part = resolve(root, part)
            if "contains" in part and isinstance(value, list):
                item = resolve(root, node.get("items", {}))
                for key in resolve(root, part["contains"]).get("required", []):
                    sub = resolve(root, item.get("properties", {}).get(key, {}))
                    if isinstance(sub, dict) and "x-image" in sub:
                        arrays.append(ImageSlot(path, sub["x-image"], key, part.get("maxContains")))
            elif "if" not in part and "contains" not in part:
                walk(part, value, path)
        if isinstance(value, dict):
            for name, sub in node.get("properties", {}).items():
                if name in value:
                    walk(sub, value[name], path + (name,))
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            for index, item in enumerate(value):
                walk(node["items"], item, path + (index,))

    walk(root, body, ())
    return images, arrays


def new_image(rules: dict[str, Any], width: int, height: int, colour: int) -> str:
    """A real inline image the provider accepts, of this size (a data URI where it takes
    them, else bare base64)."""
    fmt = writable_formats(rules["formats"])[0]
    return encoded_image(fmt, width, height, COLOURS[colour % len(COLOURS)],
                         not rules.get("dataUri") and bool(rules.get("bareBase64")))


def put(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``body`` with ``value`` at a concrete path (indices as ints)."""
    out = json.loads(json.dumps(body))
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


@cache
def simplest(provider: str, strict: bool, branch: tuple[Any, ...]) -> Body:
    """The first request Hypothesis draws for this case: its simplest valid body (only the
    required fields, one small inline image). On a live target drawn examples start with
    it, so the plan's ``all-absent`` item is usually answered from the cache."""
    seen: list[dict[str, Any]] = []

    @settings(max_examples=1, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(valid_requests(Mode(provider, strict=strict, mock=False, branch=branch)))
    def first(body: dict[str, Any]) -> None:
        seen.append(body)

    first()
    return Body(seen[0])


# --------------------------------------------------------------------------- values of optional fields


def numbers(node: dict[str, Any]) -> list[Any]:
    """Edge values of a number: its own bounds and those of its anyOf branches, in order."""
    out: list[Any] = []
    for source in [node] + [b for b in node.get("anyOf", []) if isinstance(b, dict)]:
        for key in ("minimum", "maximum", "const"):
            if key in source and isinstance(source[key], int | float) and not isinstance(source[key], bool):
                out.append(source[key])
    return out


def optional_value(node: dict[str, Any]) -> tuple[bool, Any]:
    """(found, value) for an optional field: other than its default, at an edge of its range."""
    default = node.get("default")
    if "const" in node:
        return True, node["const"]
    if "enum" in node:
        others = [v for v in node["enum"] if v != default] or node["enum"]
        return True, others[0]
    kind = node.get("type")
    if kind == "boolean":
        return True, not default if isinstance(default, bool) else True
    if kind in ("integer", "number") or "anyOf" in node:
        edges = [v for v in numbers(node) if v != default] or numbers(node)
        return (True, edges[0]) if edges else (False, None)
    if kind == "string" and not ({"pattern", "x-size", "x-image", "format"} & set(node)):
        low, high = node.get("minLength", 0), node.get("maxLength", len(TEXT))
        text = (TEXT * (1 + low // len(TEXT)))[:max(low, min(high, len(TEXT)))]
        return True, text
    if kind == "object" or "properties" in node:
        return True, {}
    return False, None


# --------------------------------------------------------------------------- the items


def valid(provider: str, strict: bool, case: Case, body: Any) -> bool:
    return (validator(provider, strict).is_valid(body) and not semantic_problems(body, provider, strict)
            and (case.condition is None or if_holds(case.condition, body)))


def shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def case_items(provider: str, strict: bool, case: Case, first: bool = True) -> tuple[list[PlanItem], list[str]]:
    where = api(provider)
    base = simplest(provider, strict, case.branch)
    items: list[PlanItem] = []
    left: list[str] = []
    suffix = f"({case.label})" if case.label else ""

    def add(kind: str, body: Any, covers: list[str]) -> None:
        if valid(provider, strict, case, body):
            items.append(PlanItem(provider, kind, case.label, tuple(covers), Body(body)))
        else:
            left.append(f"{kind}{suffix}: the planned body is not valid (a gap between the plan and the schema)")

    count = declared(case, where.count)
    count_name = label(where.count)
    low, high = count.get("minimum", 1), count.get("maximum")
    middle = (low + high) // 2 if high is not None and high - low >= 2 else None
    fmt_name = label(where.format) if where.format else None
    size = size_field(case)
    points = size_points(size.rules) if size else {}
    images, arrays = image_places(case, base)
    derived = output_size_rule(provider, base) if size is None else None

    def bounds(rules: dict[str, Any], which: str) -> str:
        keys = ("minPixels", "minSide") if which == "lower" else ("maxPixels", "maxSide")
        return ", ".join(f"{k} {rules[k]}" for k in keys if k in rules)

    # 1. several images, as many as allowed
    if high is not None and high > low:
        covers = [f"{count_name} = {high}, its maximum: several images in one answer"]
        if where.format:
            covers.append(f"{fmt_name} absent: its default, {where.format_default}")
        add("n-max", with_value(base, where.count, high), covers)
    else:
        left.append(f"n-max{suffix}: {count_name} takes one value only ({low})" if high == low
                    else f"n-max{suffix}: {count_name} has no maximum")

    # 2. a non-square size (or input), the inline format, a middle count
    body, covers = base, []
    if middle is not None:
        body = with_value(body, where.count, middle)
        covers.append(f"{count_name} = {middle}, a middle value")
    if where.format and where.inline:
        body = where.with_format(body, "inline")
        covers.append(f"{fmt_name} = {where.inline}: the images inline")
    if "wide" in points and size is not None:
        width, height = points["wide"]
        body = with_value(body, size.parts, size.text(width, height))
        covers.append(f"{label(size.parts)} = {size.text(width, height)}, not square ({WIDE[0]}:{WIDE[1]})")
    elif derived is not None and derived.get("fromInput") and images:
        slot = images[-1] if derived.get("fromInput") == "last" else images[0]
        side = slot.rules["recommendedSide"]["minimum"]
        width, height = side * WIDE[0] // WIDE[1], side
        body = put(body, slot.parts, new_image(slot.rules, width, height, 1))
        which = ("the input image" if len(images) == 1 else
                 f"the {'last' if derived.get('fromInput') == 'last' else 'first'} input image")
        covers.append(f"{which} {width}x{height}, which the output size follows (x-output-size): "
                      "a non-square output")
    else:
        left.append(f"non-square{suffix}: no size field, and the output does not follow an input image")
    if covers:
        add("non-square", body, covers)

    # 3. the largest size
    if size is not None and "upper" in points:
        width, height = points["upper"]
        add("size-max", with_value(base, size.parts, size.text(width, height)),
            [f"{label(size.parts)} = {size.text(width, height)}, the upper bound ({bounds(size.rules, 'upper')})"])
    else:
        left.append(f"size-max{suffix}: " + ("no size field applies" if size is None else "the size has no upper bound"))

    # 4. the most input images, with the smallest size
    body, covers = base, []
    for slot in arrays:
        present = [item for item in get_at(body, tuple(str(p) for p in slot.parts), [])
                   if isinstance(item, dict) and slot.key in item]
        if slot.most is None or len(present) >= slot.most:
            continue
        holder = list(get_at(body, tuple(str(p) for p in slot.parts), []))
        last = max(i for i, item in enumerate(holder) if isinstance(item, dict) and slot.key in item)
        side = slot.rules["recommendedSide"]["minimum"]
        extra = [{slot.key: new_image(slot.rules, side + SIZE_GRID * k, side + SIZE_GRID * k, k + 2)}
                 for k in range(slot.most - len(present))]
        body = put(body, slot.parts, holder[:last + 1] + extra + holder[last + 1:])
        covers.append(f"{slot.most} input images in {label(tuple(str(p) for p in slot.parts))}, the most "
                      f"(maxContains)")
    kind = "images-max" if covers else "size-min"
    if not covers:
        left.append(f"images-max{suffix}: the number of input images is fixed"
                    + (f" ({len(images)})" if images else ""))
    if size is not None and "lower" in points:
        width, height = points["lower"]
        body = with_value(body, size.parts, size.text(width, height))
        covers.append(f"{label(size.parts)} = {size.text(width, height)}, the lower bound ({bounds(size.rules, 'lower')})")
    elif kind == "size-min":
        left.append(f"size-min{suffix}: no size field applies")
    if covers:
        add(kind, body, covers)

    # 5. every optional field given
    body, given_fields, skipped = base, [], []

    def fill(node: Any, parts: Parts) -> None:
        nonlocal body
        node = merged(case.schema, node)
        required = set(node.get("required", []))
        for name, sub in node.get("properties", {}).items():
            path = parts + (name,)
            sub_node = merged(case.schema, sub)
            if forbidden(sub_node) or is_empty(case.schema, sub_node):
                continue
            if name in required:
                if sub_node.get("type") == "object" or "properties" in sub_node:
                    fill(sub, path)
                continue
            chosen, why = choose(path, sub_node)
            if chosen is None:
                skipped.append(label(path))
                continue
            _, value = chosen
            trial = body if isinstance(value, dict) and has_at(body, path) else with_value(body, path, value)
            if not valid(provider, strict, case, trial):
                skipped.append(label(path))
                continue
            body = trial
            if isinstance(value, dict):
                fill(sub, path)
            else:
                given_fields.append(f"{label(path)}={shown(value)}" + (f" ({why})" if why else ""))

    def choose(path: Parts, node: dict[str, Any]) -> tuple[tuple[bool, Any] | None, str]:
        if path == where.count:
            return (True, low), "its minimum"
        if where.format and path == where.format and where.link:
            return (True, where.link), "links, by name"
        if size is not None and path == size.parts and "wide" in points:
            width, height = points["wide"]
            separator = size.rules["separators"][-1]
            return (True, size.text(height, width, separator)), "not square, the other way" + (
                f", separator {separator}" if len(size.rules["separators"]) > 1 else "")
        if where.prompt_extend and path == where.prompt_extend:
            return (True, True), "on, by name"
        found, value = optional_value(node)
        return ((True, value) if found else None), ""

    fill(case.schema, ())
    if given_fields:
        add("all-optional", body, ["every optional field given: " + ", ".join(given_fields)]
            + ([f"left out (no valid value found): {', '.join(skipped)}"] if skipped else []))
    else:
        left.append(f"all-optional{suffix}: the request has no optional field")

    # 6. only the required fields: for the first case only (the request drawn examples start
    # with); another case's n-max or non-square item differs from its simplest by one value
    if first:
        add("all-absent", base, [f"every optional field absent: only {', '.join(base)}"])
    else:
        left.append(f"all-absent{suffix}: the first case's stands for it (this case's items above leave "
                    "every optional field but one absent)")
    return items, left


@cache
def build_plan(provider: str, strict: bool = False) -> Plan:
    """The provider's plan: each case's items, ordered by kind (``KINDS``), then by case."""
    per_case = [case_items(provider, strict, case, index == 0)
                for index, case in enumerate(cases(provider, strict))]
    ordered: list[PlanItem] = []
    seen: set[str] = set()
    left: list[str] = []
    for kind in KINDS:
        for items, _ in per_case:
            for item in items:
                key = json.dumps(item.body, sort_keys=True)
                if item.kind == kind and key not in seen:
                    seen.add(key)
                    ordered.append(item)
    for _, reasons in per_case:
        left += reasons
    return Plan(provider, tuple(ordered), tuple(left))

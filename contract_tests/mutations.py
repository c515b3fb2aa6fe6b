"""Requests that break exactly one rule, made by mutating a known-valid request.

For each rule the mutation draws a bad value (or removes a field, adds an item...) with
Hypothesis, builds every candidate placement of it in the valid body, and keeps only the
candidates that break *that rule and nothing else*:

* a schema rule: the documented schema (strict variant in strict mode), run by
  ``jsonschema``, reports errors, and every one of them is the targeted keyword at the
  targeted place;
* a semantic rule (``x-size``, ``x-image``): the schema accepts the body, and the local
  checks of ``semantics.py`` find exactly the targeted problem;
* a conditional rule (of an ``if`` / ``then`` branch) also needs its condition to hold in
  the mutated body: breaking a model's own limit must not change the model.

The check runs before anything is sent, on the very body that is sent, so neither
Hypothesis's shrinking nor a gap in a mutation can send a valid request to a test that
expects a rejection.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
from hypothesis import strategies as st

from .catalogue import Rule, resolve
from .semantics import (
    bomb_png,
    data_uri,
    make_image,
    oversized_image,
    unsupported_format,
)
from .strategies import TEXT_ALPHABET, Builder, Mode, narrow, request_schema, semantic_problems, validator

Path = tuple[Any, ...]
UNKNOWN_KEY = st.from_regex(r"x_contract_[a-z]{1,10}", fullmatch=True)
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.text(TEXT_ALPHABET, max_size=8),
                        st.just({}), st.just([]), st.just({"n": 1}))


class NoCandidate(Exception):
    """No placement of the bad value breaks the rule alone in this body."""


# --------------------------------------------------------------------------- checking


def normalise(path: Any) -> Path:
    return tuple("[]" if isinstance(part, int) else part for part in path)


def schema_errors(body: Any, provider: str, strict: bool) -> list[tuple[Path, str, Path]]:
    """(instance path with [] for indices, keyword, schema path) of each error."""
    out = []
    for error in validator(provider, strict).iter_errors(body):
        path, schema_path = normalise(error.absolute_path), tuple(error.schema_path)
        if error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            out += [(path + (name,), "required", schema_path) for name in missing]
        else:
            out.append((path, str(error.validator), schema_path))
    return out


def expected_validators(rule: Rule) -> set[str]:
    validator_name = rule.get("validator")
    if validator_name == "contains":
        return {"contains", "minContains"}
    if validator_name:
        return {validator_name}
    return {rule.base_keyword}


def breaks_only(body: Any, rule: Rule, strict: bool) -> bool:
    """True if ``body`` breaks ``rule`` and no other rule (of the schema or x-size/x-image),
    with the rule's condition, if it has one, holding."""
    if rule.condition is not None and not rule.condition.holds(body):
        return False
    errors = schema_errors(body, rule.provider, strict)
    if rule.kind == "schema":
        wanted = expected_validators(rule)
        # A value of the wrong type cannot also be one of an enum's (kept in an allOf to carry
        # its own x-error); the type error is the one the server must report.
        implied = {"enum", "const"} if rule.keyword == "type" else set()
        return any(keyword in wanted and schema_path == rule.schema_path for _, keyword, schema_path in errors) and all(
            path == rule.instance_path
            and ((keyword in wanted and schema_path == rule.schema_path) or keyword in implied)
            for path, keyword, schema_path in errors
        )
    if errors:
        return False
    problems = semantic_problems(body, rule.provider, strict)
    target = rule.base_keyword.split(".", 1)[1]
    return bool(problems) and all(
        normalise(_parse_location(where)) == rule.instance_path and problem == target for where, problem in problems
    )


def _parse_location(where: str) -> Path:
    parts: list[Any] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", where):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


# --------------------------------------------------------------------------- locating


_ABSENT = object()


def locations(body: Any, pattern: Path, create: bool = False) -> list[Path]:
    """Concrete paths in ``body`` matching ``pattern``; the last step may be absent, and with
    ``create`` so may the objects on the way when no array is (``replaced`` makes them)."""
    found: list[Path] = [()]
    for depth, step in enumerate(pattern):
        last = depth == len(pattern) - 1
        rest_keys = create and "[]" not in pattern[depth:]
        nxt = []
        for path in found:
            node = get(body, path, _ABSENT)
            if step == "[]":
                if isinstance(node, list):
                    nxt += [path + (i,) for i in range(len(node))]
            elif isinstance(node, dict) and (step in node or last or rest_keys):
                nxt.append(path + (step,))
            elif node is _ABSENT and rest_keys:
                nxt.append(path + (step,))  # inside an object replaced() creates
        found = nxt
    return found


_RAISE = object()


def get(body: Any, path: Path, default: Any = _RAISE) -> Any:
    for step in path:
        try:
            body = body[step]
        except (KeyError, IndexError, TypeError):
            if default is _RAISE:
                raise
            return default
    return body


def replaced(body: Any, path: Path, value: Any) -> Any:
    """A copy of ``body`` with ``value`` at ``path``, objects missing on the way created."""
    out = copy.deepcopy(body)
    if not path:
        return copy.deepcopy(value)
    node = out
    for step in path[:-1]:
        if isinstance(node, dict) and step not in node:
            node[step] = {}
        node = node[step]
    node[path[-1]] = copy.deepcopy(value)
    return out


def deleted(body: Any, path: Path) -> Any:
    out = copy.deepcopy(body)
    del get(out, path[:-1])[path[-1]]
    return out


def appended(body: Any, array_path: Path, *values: Any) -> Any:
    out = copy.deepcopy(body)
    get(out, array_path).extend(copy.deepcopy(list(values)))
    return out


def node_at(provider: str, strict: bool, schema_path: Path) -> dict[str, Any]:
    """The subschema holding the keyword at ``schema_path`` (its last step)."""
    schema = request_schema(provider, strict)
    node: Any = schema
    for step in schema_path[:-1]:
        node = resolve(schema, node)[step]
    return resolve(schema, node)


def declared_at(provider: str, strict: bool, instance_path: Path) -> Any:
    """The subschema the schema declares for ``instance_path`` (its ``properties`` and
    ``items``, a scalar's ``allOf`` merged; conditional branches left out), or None."""
    schema = request_schema(provider, strict)
    node: Any = resolve(schema, schema)
    for step in instance_path:
        if not isinstance(node, dict):
            return None
        node = resolve(schema, node.get("items") if step == "[]" else node.get("properties", {}).get(step))
    if not isinstance(node, dict):
        return None
    merged = {k: v for k, v in node.items() if k != "allOf"}
    for part in node.get("allOf", []):
        if "if" not in resolve(schema, part) and "contains" not in resolve(schema, part):
            merged = narrow(schema, merged, part)
    return merged


def context_of(rule: Rule, strict: bool) -> dict[str, Any]:
    """The node of the rule's keyword with what the schema declares of the same value around
    it (a then branch's ``maximum`` beside the property's own type and bounds)."""
    node = node_at(rule.provider, strict, rule.schema_path) if rule.schema_path else {}
    if rule.condition is None:
        return node
    declared = declared_at(rule.provider, strict, rule.instance_path)
    return narrow(request_schema(rule.provider, strict), declared, node) if isinstance(declared, dict) else node


# --------------------------------------------------------------------------- bad values


def bad_value(data: st.DataObject, rule: Rule, node: dict[str, Any]) -> Any:
    keyword = rule.keyword.split("(")[0]
    value = rule.value
    if keyword == "type":
        allowed = set(value if isinstance(value, list) else [value])
        samples = {"string": "1", "integer": 1, "number": 1.5, "boolean": True, "null": None, "array": [],
                   "object": {}}
        if "number" in allowed:
            allowed.add("integer")
        return data.draw(st.sampled_from([v for t, v in samples.items() if t not in allowed]), label="bad value")
    if keyword in ("enum", "const"):
        values = value if keyword == "enum" else [value]
        if all(isinstance(v, str) for v in values):
            return data.draw(st.one_of(
                st.sampled_from([v + "-x" for v in values] + [v.upper() for v in values if v.upper() != v]),
                st.text(TEXT_ALPHABET, min_size=1, max_size=30),
            ).filter(lambda s: s not in values), label="bad value")
        return data.draw(st.integers().filter(lambda i: i not in values), label="bad value")
    if keyword == "minimum":
        # below this minimum but, for a conditional one, within the value's other bounds
        floor = max(value - 1000, other_bound(rule, "minimum"))
        if node.get("type") == "integer":
            return data.draw(st.integers(math.ceil(floor), value - 1), label="bad value")
        return data.draw(st.one_of(st.integers(math.ceil(floor), math.ceil(value) - 1),
                                   st.floats(floor, value, exclude_max=True)), label="bad value")
    if keyword == "maximum":
        ceiling = min(value + 1000, other_bound(rule, "maximum"))
        if node.get("type") == "integer":
            return data.draw(st.integers(value + 1, math.floor(ceiling)), label="bad value")
        return data.draw(st.one_of(st.integers(math.floor(value) + 1, math.floor(ceiling)),
                                   st.floats(value, ceiling, exclude_min=True)), label="bad value")
    if keyword == "minLength":
        return data.draw(st.text(TEXT_ALPHABET, max_size=value - 1), label="bad value")
    if keyword == "maxLength":
        return data.draw(st.text(TEXT_ALPHABET, min_size=value + 1, max_size=value + 40), label="bad value")
    if keyword == "pattern":
        low = node.get("minLength", 0)
        return data.draw(st.text(TEXT_ALPHABET + "*x/:", min_size=max(low, 1), max_size=30).filter(
            lambda s: not re.search(value, s)), label="bad value")
    if keyword == "anyOf":
        edges = set()
        for branch in value:
            branch = resolve(request_schema(rule.provider, False), branch)
            if "const" in branch and isinstance(branch["const"], int | float):
                edges |= {branch["const"] - 1, branch["const"] + 1}
            if "minimum" in branch:
                edges.add(branch["minimum"] - 1)
            if "maximum" in branch:
                edges.add(branch["maximum"] + 1)
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default") and not k.startswith("x-")}
        branches = [jsonschema.Draft202012Validator({**rest, **resolve(request_schema(rule.provider, False), b)})
                    for b in value]
        edges = {e for e in edges if not any(b.is_valid(e) for b in branches)}
        return data.draw(st.sampled_from(sorted(edges)), label="bad value")
    raise NotImplementedError(keyword)


def other_bound(rule: Rule, keyword: str) -> float:
    """For a conditional rule, the ``minimum`` / ``maximum`` the property declares besides
    the rule's own (a model's own maximum sits inside the property's): a bad value must
    stay within it to break the rule alone. Unbounded (+-inf) otherwise."""
    unbounded = math.inf if keyword == "maximum" else -math.inf
    if rule.condition is None:
        return unbounded
    declared = declared_at(rule.provider, False, rule.instance_path) or {}
    return declared.get(keyword, unbounded)


def bad_size(data: st.DataObject, rule: Rule) -> str:
    """A size breaking the rule's x-size limit (others, where the x-size has them, kept)."""
    rules = rule.value
    sep = data.draw(st.sampled_from(rules["separators"]), label="separator")
    low, high = rules.get("minPixels", 1), rules.get("maxPixels")
    low_side, high_side = max(1, rules.get("minSide", 1)), rules.get("maxSide")
    limit = rule.get("size_rule") or rule.base_keyword.split(".", 1)[1]
    if limit == "minPixels":
        width = data.draw(st.integers(low_side, max(low_side, math.isqrt(low))), label="width")
        height = data.draw(st.integers(1, max(1, (low - 1) // width)), label="height")
    elif limit == "maxPixels":
        width = data.draw(st.integers(low_side, max(low_side, math.isqrt(high) + 1)), label="width")
        height = data.draw(st.integers(high // width + 1, high // width + 1000), label="height")
    elif limit == "minSide":
        width = data.draw(st.integers(1, low_side - 1), label="width")
        height = data.draw(st.integers(low_side, max(low_side, high_side or low_side)), label="height")
    else:  # maxSide
        width = data.draw(st.integers(high_side + 1, high_side + 1000), label="width")
        top = high // width if high else high_side
        height = data.draw(st.integers(low_side, max(low_side, min(high_side, top))), label="height")
    if data.draw(st.booleans(), label="swap sides"):
        width, height = height, width
    return f"{width}{sep}{height}"


def bad_image(data: st.DataObject, rule: Rule, strict: bool) -> str:
    rules = rule.value
    which = rule.get("image_rule")
    bare = bool(rules.get("bareBase64")) and data.draw(st.booleans(), label="bare base64")

    def inline(raw: bytes, fmt: str) -> str:
        return base64.b64encode(raw).decode() if bare else data_uri(raw, fmt)

    if which == "schemes":
        scheme = data.draw(st.sampled_from([s for s in ("ftp", "file", "s3", "gopher", "ws") if s not in rules["schemes"]]))
        name = data.draw(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True), label="name")
        return f"{scheme}://example.com/{name}.png"
    if which == "base64":
        junk = data.draw(st.text("!@#$%^&*()~<>?ABCabc123", min_size=1, max_size=40).filter(_not_base64),
                         label="junk")
        return junk if bare else f"data:image/png;base64,{junk}"
    if which == "decodes":
        text = data.draw(st.text(TEXT_ALPHABET, min_size=1, max_size=60), label="not an image")
        return inline(("not an image: " + text).encode(), "PNG")
    if which == "formats":
        fmt = unsupported_format(rules["formats"])
        side = rules["recommendedSide"]["minimum"]
        colour = data.draw(st.tuples(*[st.integers(0, 255)] * 3), label="colour")
        return inline(make_image(fmt, side, side, colour), fmt)
    if which == "maxBytes":
        fmt, raw = oversized_image(tuple(rules["formats"]), rules["maxBytes"], rules["maxPixels"])
        return inline(raw, fmt)
    if which == "maxPixels":
        return inline(bomb_png(rules["maxPixels"]), "PNG")
    if which == "recommendedSide":
        low = rules["recommendedSide"]["minimum"]
        width = data.draw(st.integers(1, low - 1), label="width")
        height = data.draw(st.integers(1, low + 16), label="height")
        return inline(make_image("PNG", width, height, (90, 90, 90)), "PNG")
    raise NotImplementedError(which)


def _not_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return True
    return False


# --------------------------------------------------------------------------- candidates


def candidates(data: st.DataObject, rule: Rule, body: dict[str, Any], strict: bool) -> Iterator[Any]:
    keyword = rule.keyword.split("(")[0]
    pattern = rule.instance_path
    if rule.kind == "semantic":
        bad = bad_size(data, rule) if keyword.startswith("x-size") else bad_image(data, rule, strict)
        for path in locations(body, pattern, create=True):
            yield replaced(body, path, bad)
        return

    node = context_of(rule, strict)
    if keyword in ("type", "enum", "const", "minimum", "maximum", "minLength", "maxLength", "pattern", "anyOf"):
        bad = bad_value(data, rule, node)
        for path in locations(body, pattern, create=True):
            yield replaced(body, path, bad)
        if pattern and pattern[-1] == "[]":
            for path in locations(body, pattern[:-1]):
                yield appended(body, path, bad)
    elif keyword == "required":
        for path in locations(body, pattern):
            if isinstance(get(body, path[:-1]), dict) and path[-1] in get(body, path[:-1]):
                yield deleted(body, path)
    elif keyword == "not":
        # a value the declared property takes (a size, say), where it declares one: only the
        # ban is broken; any JSON value where the property is banned outright
        declared = declared_at(rule.provider, strict, rule.instance_path)
        values = JSON_VALUES
        if isinstance(declared, dict) and declared.get("not") not in ({}, True) and (
                set(declared) & {"type", "enum", "const", "pattern", "x-size", "x-image"}):
            values = Builder(request_schema(rule.provider, strict), Mode(rule.provider, strict)).build(declared)
        value = data.draw(values, label="forbidden value")
        for path in locations(body, pattern, create=True):
            yield replaced(body, path, value)
    elif keyword == "minItems":
        for path in locations(body, pattern):
            keep = data.draw(st.integers(0, rule.value - 1), label="items kept")
            yield replaced(body, path, get(body, path)[:keep])
    elif keyword == "maxItems":
        for path in locations(body, pattern):
            items = get(body, path)
            if items:
                extra = rule.value + 1 - len(items) + data.draw(st.integers(0, 1), label="extra items")
                yield appended(body, path, *[items[i % len(items)] for i in range(max(extra, 0))])
    elif keyword in ("minContains", "maxContains"):
        matcher = jsonschema.Draft202012Validator(rule.get("contains"))
        for path in locations(body, pattern):
            items = get(body, path)
            matching = [i for i, item in enumerate(items) if matcher.is_valid(item)]
            if keyword == "minContains":
                keep = data.draw(st.integers(0, rule.value - 1), label="matching kept")
                drop = set(matching[keep:])
                yield replaced(body, path, [item for i, item in enumerate(items) if i not in drop])
            elif matching:
                extra = rule.value + 1 - len(matching) + data.draw(st.integers(0, 1), label="extra matching")
                copies = [items[matching[i % len(matching)]] for i in range(max(extra, 0))]
                yield appended(body, path, *copies)
    elif keyword == "minProperties":
        for path in locations(body, pattern):
            yield replaced(body, path, {})
        if pattern and pattern[-1] == "[]":
            for path in locations(body, pattern[:-1]):
                yield appended(body, path, {})
    elif keyword == "maxProperties":
        yield from _too_many_properties(data, rule, body, node)
    elif keyword == "additionalProperties":
        name = data.draw(UNKNOWN_KEY.filter(lambda k: k not in node.get("properties", {})), label="unknown key")
        value = data.draw(JSON_VALUES, label="unknown value")
        for path in locations(body, pattern):
            target = get(body, path, {})
            if isinstance(target, dict):
                yield replaced(body, path, {**target, name: value})
        if pattern and pattern[-1] == "[]":
            for path in locations(body, pattern[:-1]):
                yield appended(body, path, {name: value})
    else:
        raise NotImplementedError(rule.keyword)


def _too_many_properties(data, rule: Rule, body: Any, node: dict[str, Any]) -> Iterator[Any]:
    limit = rule.value
    known = list(node.get("properties", {}))
    paths = locations(body, rule.instance_path)
    # Merge siblings of an array into one object (keeps every "contains" count), or add
    # known keys to an object, with values taken from siblings that have them.
    pool: dict[str, Any] = {}
    for path in paths:
        item = get(body, path)
        if isinstance(item, dict):
            for key, value in item.items():
                pool.setdefault(key, value)
    if rule.instance_path and rule.instance_path[-1] == "[]":
        for array_path in locations(body, rule.instance_path[:-1]):
            items = get(body, array_path)
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    if isinstance(items[i], dict) and isinstance(items[j], dict):
                        merged = {**items[i], **items[j]}
                        if len(merged) > limit:
                            rest = [item for k, item in enumerate(items) if k not in (i, j)]
                            yield replaced(body, array_path, rest[:i] + [merged] + rest[i:])
    for path in paths:
        item = get(body, path)
        if isinstance(item, dict):
            extra = {k: pool[k] for k in known if k not in item and k in pool}
            if len(item) + len(extra) > limit:
                yield replaced(body, path, {**item, **extra})


def draw_violation(data: st.DataObject, rule: Rule, body: dict[str, Any], strict: bool) -> Any:
    """A mutation of ``body`` that breaks ``rule`` alone; ``NoCandidate`` if this body has none."""
    good = [c for c in candidates(data, rule, body, strict) if breaks_only(c, rule, strict)]
    if not good:
        raise NoCandidate(rule.id)
    from .strategies import Body

    good = [Body(c) if isinstance(c, dict) else c for c in good]
    return data.draw(st.sampled_from(good), label="violating request") if len(good) > 1 else good[0]


def describe_failures(body: Any, provider: str, strict: bool) -> str:
    """What a body breaks, for messages."""
    errors = schema_errors(body, provider, strict)
    problems = semantic_problems(body, provider, strict) if not errors else []
    return json.dumps({"schema": [f"{'.'.join(map(str, p))}: {k}" for p, k, _ in errors],
                       "semantic": [f"{w}: {p}" for w, p in problems]})

"""What the tests assert about an answer, as small functions with readable failure messages."""

from __future__ import annotations

import io
import json
import re
import time
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema
from PIL import Image

from mockserver.core.schemas import load_schema, strict_variant

from .catalogue import resolve
from .providers import Parts, api, get_at, if_holds, label
from .report import Exchange, redact
from .semantics import derived_size, inspect_image, parse_size, within_output_bounds
from .strategies import Body, request_schema  # noqa: F401  (Body is re-exported)
from .target import b64_payload

DAY = 86400


def short_json(value: Any, limit: int = 400) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"… <{len(text)} chars>"


def shown(exchange: Exchange) -> str:
    try:
        body: Any = redact(json.loads(exchange.response_body))
        text = short_json(body)
    except (ValueError, UnicodeDecodeError):
        text = exchange.response_body[:300].decode("utf-8", "replace")
    rid = exchange.request_id
    return f"status {exchange.status}, request id {rid}, body {text}"


@cache
def response_validator(provider: str, strict: bool) -> jsonschema.Draft202012Validator:
    schema = load_schema(provider, "response")
    return jsonschema.Draft202012Validator(strict_variant(schema) if strict else schema)


@cache
def error_validator(provider: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(provider, "error"))


def error_catalogue(provider: str) -> dict[str, dict[str, Any]]:
    return load_schema(provider, "error")["x-errors"]


# --------------------------------------------------------------------------- answers


def expect_sent(exchange: Exchange) -> None:
    assert exchange.error is None, f"{exchange.method} {exchange.url}: no answer ({exchange.error})"


def expect_json(exchange: Exchange) -> Any:
    expect_sent(exchange)
    content_type = exchange.response_headers.get("content-type", "")
    assert content_type.split(";")[0].strip() == "application/json", (
        f"expected an application/json answer, got content-type {content_type!r}; {shown(exchange)}")
    try:
        return json.loads(exchange.response_body)
    except ValueError as error:
        raise AssertionError(f"the answer is not JSON ({error}); {shown(exchange)}") from None


def expect_ok(exchange: Exchange) -> Any:
    expect_sent(exchange)
    hint = (f" — the target refused the credentials: is the right key in ${exchange.key_env}?"
            if exchange.status == 401 and exchange.key_env else "")
    assert exchange.status == 200, f"a valid request was not accepted: expected 200, got {shown(exchange)}{hint}"
    return expect_json(exchange)


def expect_error(exchange: Exchange, provider: str, status: int, kind: str | None = None) -> dict[str, Any]:
    """``status`` in the provider's error envelope (``error.json``); with ``kind``, the
    catalogue's type and code for it too."""
    expect_sent(exchange)
    hint = ""
    if exchange.status == 401 and status != 401:
        hint = (f" — the target refused the credentials: is the right key in ${exchange.key_env}?"
                if exchange.key_env else "")
    assert exchange.status == status, f"expected {status}, got {shown(exchange)}{hint}"
    body = expect_json(exchange)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
                for e in error_validator(provider).iter_errors(body)]
    assert not problems, f"the error body is not the provider's envelope (error.json): {problems}; {shown(exchange)}"
    if kind is not None:
        entry = error_catalogue(provider)[kind]
        where = api(provider)
        # the fields of the catalogue entry the envelope has a place for (type, code)
        fields = [name for name in ("type", "code") if name in entry and where.error_field(name) is not None]
        expected = {name: entry[name] for name in fields}
        got = {name: error_value(provider, body, name) for name in fields}
        assert got == expected, (
            f"{kind}: expected " + " and ".join(f"{n} {v!r}" for n, v in expected.items()) + ", got "
            + " and ".join(f"{n} {v!r}" for n, v in got.items()) + f"; {shown(exchange)}")
    return body


def error_value(provider: str, body: Any, name: str) -> Any:
    """The value of an envelope field (``message``, ``type``, ``code``, ``param``,
    ``request_id``) in an error body: where the provider's ``x-envelope`` puts it."""
    path = api(provider).error_field(name)
    return None if path is None else get_at(body, path, None)


def error_field_label(provider: str, name: str) -> str:
    path = api(provider).error_field(name)
    return label(path) if path is not None else name


# --------------------------------------------------------------------------- what a request asks for


def requested_n(provider: str, body: dict[str, Any]) -> int:
    return int(api(provider).requested_count(body))


def requested_format(provider: str, body: dict[str, Any]) -> str:
    """``inline`` or ``link``."""
    return api(provider).requested_format(body)


def images_in(provider: str, body: Any) -> list[tuple[str, dict[str, Any]]]:
    """The image strings of a request, in order, each with its x-image rules (found through
    the x-image keyword)."""
    schema = request_schema(provider, False)
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Any, value: Any) -> None:
        node = resolve(schema, node)
        if not isinstance(node, dict):
            return
        if "x-image" in node and isinstance(value, str):
            found.append((value, node["x-image"]))
        if isinstance(value, dict):
            for name, sub in node.get("properties", {}).items():
                if name in value:
                    walk(sub, value[name])
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            for item in value:
                walk(node["items"], item)

    walk(schema, body)
    return found


@dataclass(frozen=True)
class ExpectedSize:
    """The output size a request asks for, and how it was worked out."""

    width: int
    height: int
    how: str
    tolerance: int = 0  # pixels either way per side: rounding is undocumented for derived sizes
    bounds: dict[str, Any] | None = None  # the x-output-size block a derived size must keep to

    def problem(self, size: tuple[int, int]) -> str | None:
        """Why an image of ``size`` is not what was asked for (None: it is)."""
        width, height = size
        near = abs(width - self.width) <= self.tolerance and abs(height - self.height) <= self.tolerance
        if not near:
            slack = f" (±{self.tolerance} px)" if self.tolerance else ""
            return f"is {width}x{height}, the request asks for {self.width}x{self.height}{slack}: {self.how}"
        broken = within_output_bounds(self.bounds, size) if self.bounds and self.tolerance else []
        if broken:
            return f"is {width}x{height}, which has {', '.join(broken)} ({self.how})"
        return None


def size_fields(provider: str, body: Any) -> list[tuple[Parts, dict[str, Any], Any]]:
    """(where, x-size rules, default) of each size field that applies to ``body``: those of
    if/then branches only where their condition holds."""
    schema = request_schema(provider, False)
    found: list[tuple[Parts, dict[str, Any], Any]] = []

    def walk(node: Any, value: Any, path: Parts, default: Any) -> None:
        node = resolve(schema, node)
        if not isinstance(node, dict):
            return
        default = node.get("default", default)
        if "x-size" in node:
            found.append((path, node["x-size"], default))
        for part in node.get("allOf", []):
            part = resolve(schema, part)
            if "if" not in part:
                walk(part, value, path, default)
            elif value is not None and if_holds(part["if"], value):
                walk(part.get("then", {}), value, path, default)
        for name, sub in node.get("properties", {}).items():
            walk(sub, value.get(name) if isinstance(value, dict) else None, path + (name,), None)

    walk(schema, body, (), None)
    return found


def output_size_rule(provider: str, body: Any) -> dict[str, Any] | None:
    """The ``x-output-size`` block deciding the output size of ``body``: the one of the if/then
    branch whose condition it meets, else the schema's own."""
    schema = request_schema(provider, False)
    rule = schema.get("x-output-size")
    for part in schema.get("allOf", []):
        part = resolve(schema, part)
        if "if" in part and if_holds(part["if"], body) and "x-output-size" in part.get("then", {}):
            rule = part["then"]["x-output-size"]
    return rule


def requested_size(provider: str, body: dict[str, Any]) -> ExpectedSize:
    """The output size a request asks for: its x-size field (or that field's default), or,
    by x-output-size, the size derived from an input image (the ``last`` one where it says
    so, else the first), or its fallback for an input the server cannot see (a URL)."""
    for path, rules, default in size_fields(provider, body):
        value = get_at(body, path, None)
        if value is None and default is None:
            continue
        width, height = parse_size(value if value is not None else default, rules)
        what = f"{label(path)} {value!r}" if value is not None else f"{label(path)}'s default {default!r}"
        return ExpectedSize(width, height, what)
    rule = output_size_rule(provider, body)
    if rule is None:
        raise LookupError(f"{provider}: the request schema says nothing of the output size of {short_json(body)}")
    images = images_in(provider, body)
    chosen = (images[-1] if rule.get("fromInput") == "last" else images[0]) if images else None
    which = "the last input image" if rule.get("fromInput") == "last" else "the input image"
    info = inspect_image(chosen[0], chosen[1], False)[1] if chosen else None
    if info is None or info.width is None:
        width, height = derived_size(rule, None)
        return ExpectedSize(width, height, f"{which} is a URL: x-output-size.forUrlInput")
    width, height = derived_size(rule, (info.width, info.height))
    steps = [k for k in ("area", "maxAspectRatio", "minPixels", "maxPixels", "minSide", "maxSide") if k in rule]
    return ExpectedSize(width, height, f"derived from {which} ({info.width}x{info.height}) by x-output-size "
                        f"({', '.join(f'{k} {rule[k]}' for k in steps)})", tolerance=1, bounds=rule)


# --------------------------------------------------------------------------- images


def decode_image(data: bytes, what: str) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as error:
            raise AssertionError(f"{what} does not decode as an image ({type(error).__name__}: {error}); "
                                 f"{len(data)} bytes starting {data[:16]!r}") from None
    return image


def b64_image(value: Any, what: str) -> Image.Image:
    assert isinstance(value, str) and value, f"{what} is not a non-empty string: {short_json(value, 100)}"
    try:
        data = b64_payload(value)
    except ValueError as error:
        raise AssertionError(f"{what} is not valid base64 ({error}): {value[:60]!r}…") from None
    return decode_image(data, what)


def plausible_created(created: Any, frozen: int | None, recorded_at: int | None = None) -> None:
    """``created`` is a Unix time in seconds within a day of now (of when the answer was
    recorded, for a cassette's), or the frozen clock's."""
    assert isinstance(created, int) and not isinstance(created, bool), f"created is not an integer: {created!r}"
    if frozen is not None:
        assert created == frozen, f"created is {created}, expected the frozen clock's {frozen}"
        return
    now = int(time.time()) if recorded_at is None else recorded_at
    when = "now" if recorded_at is None else "when it was recorded"
    assert abs(created - now) <= DAY, (
        f"created is {created}, {created - now:+d} s from {when} ({now}): not a Unix time in seconds within a day "
        f"of {when} (pass --frozen-time T for a target with a frozen clock)")


def first_difference(a: Any, b: Any, path: tuple = ()) -> tuple | None:
    """The path of the first place two JSON values differ."""
    if type(a) is not type(b):
        return path
    if isinstance(a, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return path + (key,)
            found = first_difference(a[key], b[key], path + (key,))
            if found is not None:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return path
        for index, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, path + (index,))
            if found is not None:
                return found
        return None
    return None if a == b else path


def same_field(param: Any, expected: str) -> bool:
    """A JSON path naming the field, allowing the common spellings ($.a.b, a/b, a[0])."""
    if not isinstance(param, str):
        return False
    norm = lambda s: re.sub(r"^\$\.?", "", s).replace("/", ".").replace("[", ".").replace("]", "")  # noqa: E731
    return norm(param) == norm(expected)

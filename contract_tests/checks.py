"""What the tests assert about an answer, as small functions with readable failure messages."""

from __future__ import annotations

import io
import json
import re
import time
import warnings
from functools import cache
from typing import Any

import jsonschema
from PIL import Image

from mockserver.core.schemas import load_schema, objects_in, strict_variant

from .catalogue import resolve
from .report import Exchange, redact
from .semantics import inspect_image, parse_size
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
        got = (body["error"].get("type"), body["error"].get("code"))
        assert got == (entry["type"], entry["code"]), (
            f"{kind}: expected type {entry['type']!r} and code {entry['code']!r}, got type {got[0]!r} and "
            f"code {got[1]!r}; {shown(exchange)}")
    return body


# --------------------------------------------------------------------------- what a request asks for


def requested_n(provider: str, body: dict[str, Any]) -> int:
    schema = request_schema(provider, False)
    return int(body.get("n", schema["properties"]["n"].get("default", 1)))


def requested_format(provider: str, body: dict[str, Any]) -> str:
    schema = request_schema(provider, False)
    return body.get("response_format", schema["properties"]["response_format"].get("default", "url"))


def images_in(provider: str, body: Any) -> list[str]:
    """The image strings of a request, in order (found through the x-image keyword)."""
    schema = request_schema(provider, False)
    found: list[str] = []

    def walk(node: Any, value: Any) -> None:
        node = resolve(schema, node)
        if not isinstance(node, dict):
            return
        if "x-image" in node and isinstance(value, str):
            found.append(value)
        if isinstance(value, dict):
            for name, sub in node.get("properties", {}).items():
                if name in value:
                    walk(sub, value[name])
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            for item in value:
                walk(node["items"], item)

    walk(schema, body)
    return found


def requested_size(provider: str, body: dict[str, Any]) -> tuple[int, int]:
    """The output size a request asks for: its x-size field (or that field's default), or,
    with x-output-size, the first inline input image's size (fallback for URL inputs)."""
    schema = request_schema(provider, False)
    for name, prop in schema["properties"].items():
        if "x-size" in prop:
            return parse_size(body.get(name, prop["default"]), prop["x-size"])
    rule = schema["x-output-size"]
    for value in images_in(provider, body):
        node = _image_node(schema)
        _, info = inspect_image(value, node["x-image"], False)
        if info is not None and info.width is not None and rule.get("fromInput"):
            return info.width, info.height
    return tuple(rule["forUrlInput"])  # type: ignore[return-value]


def _image_node(schema: dict[str, Any]) -> dict[str, Any]:
    for node in objects_in(schema):
        if "x-image" in node:
            return node
    raise LookupError("no x-image in the schema")


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


def plausible_created(created: Any, frozen: int | None) -> None:
    assert isinstance(created, int) and not isinstance(created, bool), f"created is not an integer: {created!r}"
    if frozen is not None:
        assert created == frozen, f"created is {created}, expected the frozen clock's {frozen}"
        return
    now = int(time.time())
    assert abs(created - now) <= DAY, (
        f"created is {created}, {created - now:+d} s from now ({now}): not a Unix time in seconds within a day of "
        "now (pass --frozen-time T for a target with a frozen clock)")


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

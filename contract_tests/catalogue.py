"""The rule catalogue: every rule the suite checks, read from the files in ``schemas/``.

* ``schema`` rules: one per constraint keyword of a request schema (``minimum``,
  ``maximum``, ``enum``, ``type``, ``required``, ``minItems``, ``minContains``, ``pattern``,
  ``not``, ``additionalProperties: false``...), found by walking the schema.
* ``semantic`` rules: what ``x-size`` and ``x-image`` say and JSON Schema cannot.
* ``strict`` variants of both: keywords under ``x-strict`` and the unknown-field ban of
  strict mode, checked only with ``--strict-mode``.
* ``response``, ``protocol`` and ``mock`` rules: what a valid request must get back, how
  errors and credentials are answered, and what only the mock promises (determinism).

Each rule carries its source (``doc``, ``upstream``, ``assumption``), resolved the way the
mock resolves it: the deepest ``x-source`` on the way to the keyword wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mockserver.core.schemas import load_schema, objects_in, strict_variant

PROVIDERS = ("powertokens", "modelverse")
PATHS = {"powertokens": "/v1/images/edits", "modelverse": "/v1/images/generations"}
KEY_ENV = {"powertokens": "POWERTOKENS_API_KEY", "modelverse": "MODELVERSE_API_KEY"}

# Keywords that constrain a value (rather than structure the schema).
CONSTRAINTS = (
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "minProperties",
    "maxProperties", "required", "not", "anyOf", "oneOf",
)

MEANING = {
    "doc": "the provider broke its documented contract (or its document is wrong)",
    "upstream": "the provider differs from the upstream model service's documentation, which we relied on",
    "assumption": "our assumption is wrong (nobody documents this rule)",
}


@dataclass(frozen=True)
class Rule:
    provider: str
    kind: str  # schema | semantic | response | protocol | mock
    field: str  # "n", "input.messages[].content[].image", "(body)", "response.data"...
    keyword: str  # "maximum", "minContains(image)", "x-size.minPixels", "status"...
    source: str
    description: str
    strict_only: bool = False
    # schema rules: where the keyword is, the way jsonschema reports it (no "$ref" steps)
    schema_path: tuple[Any, ...] = ()
    # the instance the keyword applies to; "[]" stands for every item of an array
    instance_path: tuple[Any, ...] = ()
    value: Any = None  # the keyword's value (or the property name, for required)
    variant: str = ""  # response rules: which valid requests they need (any, b64_json, url)
    extra: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.provider}::{self.field}::{self.keyword}[{self.source}]"

    @property
    def meaning(self) -> str:
        return MEANING.get(self.source, "")

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)


def source_of(node: Any, keyword: str) -> str | None:
    if not isinstance(node, dict):
        return None
    source = node.get("x-source")
    if isinstance(source, dict):
        return source.get(keyword)
    return source


def field_label(instance_path: tuple[Any, ...]) -> str:
    text = ""
    for part in instance_path:
        if part == "[]":
            text += "[]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(body)"


def resolve(root: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            if part:
                target = target[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **rest} if rest else target
    return node


def is_unsatisfiable(node: Any) -> bool:
    return node is False or (isinstance(node, dict) and node.get("not") in ({}, True))


def describe(keyword: str, value: Any, label: str) -> str:
    return {
        "type": f"{label} must be of type {value}",
        "enum": f"{label} must be one of {value}",
        "const": f"{label} must be {value!r}",
        "minimum": f"{label} must be >= {value}",
        "maximum": f"{label} must be <= {value}",
        "minLength": f"{label} must have at least {value} characters",
        "maxLength": f"{label} must have at most {value} characters",
        "pattern": f"{label} must match {value}",
        "minItems": f"{label} must have at least {value} items",
        "maxItems": f"{label} must have at most {value} items",
        "minProperties": f"{label} must have at least {value} keys",
        "maxProperties": f"{label} must have at most {value} keys",
        "required": f"{label} is required",
        "not": f"{label} must not be present",
        "anyOf": f"{label} must match one of {value}",
        "additionalProperties": f"{label} must not carry unknown keys",
    }.get(keyword, f"{label}: {keyword} {value}")


class _Walker:
    """Walks one request schema, yielding a rule per constraint keyword."""

    def __init__(self, provider: str, root: dict[str, Any], strict_names: set[tuple]) -> None:
        self.provider = provider
        self.root = root
        self.rules: list[Rule] = []
        self.strict_names = strict_names  # (schema_path, keyword) present only in strict mode

    def walk(self, node: Any, schema_path: tuple, instance_path: tuple, inherited: str | None,
             raw_nodes: tuple) -> None:
        node = resolve(self.root, node)
        if not isinstance(node, dict):
            return
        nodes = raw_nodes + (node,)
        label = field_label(instance_path)

        def source(keyword: str) -> str:
            found = inherited
            for n in nodes:
                found = source_of(n, keyword) or found
            return found or "assumption"

        def add(kind: str, keyword: str, value: Any, path: tuple, inst: tuple, description: str,
                src: str, **extra: Any) -> None:
            key = (path, keyword)
            strict_only = key in self.strict_names
            self.rules.append(Rule(
                provider=self.provider, kind=kind, field=field_label(inst),
                keyword=keyword + ("(strict)" if strict_only else ""), source=src, description=description,
                strict_only=strict_only, schema_path=path, instance_path=inst, value=value,
                extra=tuple(sorted(extra.items())),
            ))

        siblings_fix_type = "enum" in node or "const" in node
        for keyword in CONSTRAINTS:
            if keyword not in node:
                continue
            value = node[keyword]
            if keyword == "type" and siblings_fix_type:
                continue  # a value of another type breaks enum/const too: the enum rule covers it
            if keyword == "required":
                for name in value:
                    add("schema", "required", name, schema_path + ("required",), instance_path + (name,),
                        describe("required", None, field_label(instance_path + (name,))), source("required"))
                continue
            add("schema", keyword, value, schema_path + (keyword,), instance_path,
                describe(keyword, value, label), source(keyword))
        if node.get("additionalProperties") is False:
            add("schema", "additionalProperties", False, schema_path + ("additionalProperties",), instance_path,
                describe("additionalProperties", False, label), source("additionalProperties"))
        for index, part in enumerate(node.get("allOf", [])):
            part = resolve(self.root, part)
            if "contains" in part:
                contains = resolve(self.root, part["contains"])
                what = ",".join(contains.get("required", [])) or "match"
                part_nodes = nodes + (part,)
                src = inherited
                for n in part_nodes:
                    src = source_of(n, "minContains") or src
                path = schema_path + ("allOf", index, "contains")
                low, high = part.get("minContains", 1), part.get("maxContains")
                if low > 0:
                    add("schema", f"minContains({what})", low, path, instance_path,
                        f"{label} must hold at least {low} item(s) with {what}", src or "assumption",
                        contains=contains, minContains=low, maxContains=high, validator="contains")
                if high is not None:
                    add("schema", f"maxContains({what})", high, path, instance_path,
                        f"{label} must hold at most {high} item(s) with {what}", src or "assumption",
                        contains=contains, minContains=low, maxContains=high, validator="maxContains")
            else:
                self.walk(part, schema_path + ("allOf", index), instance_path, inherited, nodes)
        if "x-size" in node:
            xs = node["x-size"]
            src = source_of(xs, "x-size") or source("x-size")
            self.rules.append(Rule(self.provider, "semantic", label, "x-size.minPixels", src,
                                   f"{label} must total at least {xs['minPixels']} pixels",
                                   instance_path=instance_path, value=xs, schema_path=schema_path))
            self.rules.append(Rule(self.provider, "semantic", label, "x-size.maxPixels", src,
                                   f"{label} must total at most {xs['maxPixels']} pixels",
                                   instance_path=instance_path, value=xs, schema_path=schema_path))
        if "x-image" in node:
            self.add_image_rules(node, instance_path, schema_path, source)
        for name, sub in node.get("properties", {}).items():
            sub_resolved = resolve(self.root, sub)
            if is_unsatisfiable(sub_resolved):
                # {"not": {}}: the property is forbidden; its "not" is a rule of its own
                src = inherited
                for n in nodes + (sub_resolved,):
                    src = source_of(n, "not") or src
                add("schema", "not", sub_resolved.get("not"), schema_path + ("properties", name, "not"),
                    instance_path + (name,), describe("not", None, field_label(instance_path + (name,))),
                    src or "assumption")
                continue
            self.walk(sub, schema_path + ("properties", name), instance_path + (name,), inherited, nodes)
        if isinstance(node.get("items"), dict):
            self.walk(node["items"], schema_path + ("items",), instance_path + ("[]",), inherited, nodes)

    def add_image_rules(self, node: dict[str, Any], instance_path: tuple, schema_path: tuple, source) -> None:
        rules = node["x-image"]
        own = rules.get("x-source", {})
        label = field_label(instance_path)
        lookup = {"schemes": "schemes", "base64": "dataUri", "maxBytes": "maxBytes", "decodes": "formats",
                  "formats": "formats", "maxPixels": "maxPixels", "recommendedSide": "recommendedSide"}
        texts = {
            "schemes": f"{label}: a URL must use one of the schemes {rules['schemes']}",
            "base64": f"{label}: inline image data must be valid base64",
            "maxBytes": f"{label}: image bytes must not exceed {rules['maxBytes']}",
            "decodes": f"{label}: inline data must be a real image",
            "formats": f"{label}: the image format must be one of {rules['formats']}",
            "maxPixels": f"{label}: an image claiming over {rules['maxPixels']} pixels is refused undecoded",
            "recommendedSide": f"{label}: each side must lie in {rules['recommendedSide']['minimum']}-"
                               f"{rules['recommendedSide']['maximum']} px (strict mode)",
        }
        if "pattern" in node:
            # the schema's own pattern already refuses other schemes: no request breaks this alone
            del texts["schemes"]
        for sub, text in texts.items():
            src = (own.get(lookup[sub]) if isinstance(own, dict) else own) or source("x-image")
            strict_only = sub == "recommendedSide"
            self.rules.append(Rule(
                self.provider, "semantic", label, f"x-image.{sub}" + ("(strict)" if strict_only else ""), src,
                text, strict_only=strict_only, instance_path=instance_path, value=rules,
                schema_path=schema_path, extra=(("image_rule", sub),),
            ))


def _schema_keys(rules: list[Rule]) -> set[tuple]:
    return {(r.schema_path, r.keyword.split("(")[0]) for r in rules if r.kind == "schema"}


@cache
def request_rules(provider: str) -> tuple[Rule, ...]:
    """Schema and semantic rules of a provider's request, strict-only ones marked."""
    lenient = load_schema(provider, "request")
    strict = strict_variant(lenient)
    lenient_rules = _walk(provider, lenient, set())
    strict_keys = _schema_keys(_walk(provider, strict, set())) - _schema_keys(lenient_rules)
    strict_rules = _walk(provider, strict, strict_keys)
    out = []
    for rule in strict_rules:
        if rule.strict_only and rule.kind == "schema" and rule.keyword.startswith("additionalProperties"):
            # strict mode's ban of unknown fields is the mock's own (SPEC: "ignored, as real
            # gateways do"); it has no x-source of its own
            rule = Rule(**{**rule.__dict__, "source": "assumption"})
        out.append(rule)
    return tuple(out)


def _walk(provider: str, schema: dict[str, Any], strict_keys: set[tuple]) -> list[Rule]:
    walker = _Walker(provider, schema, strict_keys)
    walker.walk(schema, (), (), source_of(schema, "type"), ())
    return walker.rules


# --------------------------------------------------------------------------- other rules


def _response_source(provider: str, *keys: str, default: str = "doc") -> str:
    node: Any = load_schema(provider, "response")
    found = source_of(node, "type") or default
    for key in keys:
        node = resolve(load_schema(provider, "response"), node[key])
        found = source_of(node, "type") or found
    return found


def _error_source(provider: str, kind: str) -> str:
    return load_schema(provider, "error")["x-errors"][kind].get("x-source", "assumption")


def output_size_source(provider: str) -> str:
    request = load_schema(provider, "request")
    if "x-output-size" in request:
        return request["x-output-size"].get("x-source", "assumption")
    for name, prop in request["properties"].items():
        if "x-size" in prop:
            return source_of(prop, "default") or source_of(prop, "type") or "doc"
    return "assumption"


@cache
def response_rules(provider: str) -> tuple[Rule, ...]:
    R = lambda field, keyword, source, text, variant="any", **extra: Rule(  # noqa: E731
        provider, "response", field, keyword, source, text, variant=variant, extra=tuple(sorted(extra.items())))
    response = load_schema(provider, "response")
    image_props = response["$defs"]["image"]["properties"]
    size_src = output_size_source(provider)
    rules = [
        R("response", "status-200", _response_source(provider), "a valid request is answered 200"),
        R("response", "content-type", _response_source(provider), "the answer is application/json"),
        R("response", "schema", _response_source(provider), "the body validates against response.json"),
        R("response.data", "count", _response_source(provider, "properties", "data"),
          "data holds exactly n items (n's default when absent)"),
        R("response.data[].b64_json", "image-size", size_src,
          "with response_format b64_json each item's b64_json decodes to an image of the requested size",
          variant="b64_json"),
        R("response.data[].url", "image-size", size_src,
          "with response_format url (or absent) each url downloads as an image of the requested size",
          variant="url"),
        R("response.data[]", "png", "upstream", "output images are PNG (upstream returns PNG)",
          variant="b64_json"),
        R("response.created", "plausible", source_of(response["properties"]["created"], "type") or "doc",
          "created is the Unix time in seconds: within a day of now (or the --frozen-time given)"),
        R("response", "x-request-id", "assumption", "the answer carries an x-request-id header"),
        R("request", "unknown-field-ignored", "assumption",
          "an unknown top-level field is ignored (answered 200), outside strict mode"),
        R("response", "strict-schema", _response_source(provider),
          "the body validates against response.json with its x-strict keywords applied (--strict-mode)"),
    ]
    if "revised_prompt" in image_props:
        rules.append(R("response.data[].revised_prompt", "present", source_of(image_props["revised_prompt"], "type")
                       or "doc", "with prompt_extend on (its default), each item has a revised_prompt"))
    return tuple(rules)


@cache
def protocol_rules(provider: str) -> tuple[Rule, ...]:
    R = lambda field, keyword, source, text, **extra: Rule(  # noqa: E731
        provider, "protocol", field, keyword, source, text, extra=tuple(sorted(extra.items())))
    error = load_schema(provider, "error")
    auth = _error_source(provider, "authentication")
    rules = [
        R("auth", "missing-token", auth, "no Authorization header: 401 in the error envelope with the catalogue's code"),
        R("auth", "malformed-token", auth, "an Authorization header that is not 'Bearer <token>': 401"),
        R("auth", "invalid-key", auth, "a wrong key: 401 (needs a target that checks keys)"),
        R("error", "invalid_json", _error_source(provider, "invalid_json"),
          "a body that is not JSON: 400 with the catalogue's invalid_json type and code"),
        R("error", "invalid_parameter", _error_source(provider, "invalid_parameter"),
          "an out-of-range value: 400 with the catalogue's invalid_parameter type and code"),
        R("error", "body_too_large", _error_source(provider, "body_too_large"),
          "a body over the size limit (--max-body-bytes): 413 in the error envelope"),
        R("error", "not_found", _error_source(provider, "not_found"), "an unknown path: 404 as JSON"),
        R("error", "method_not_allowed", _error_source(provider, "method_not_allowed"),
          "GET on the edit path: 405 in the error envelope"),
        R("error", "x-request-id", "assumption", "an error answer carries an x-request-id header too"),
    ]
    request = load_schema(provider, "request")
    kinds = sorted({n["x-error"] for n in objects_in(request) if "x-error" in n})
    for kind in kinds:
        rules.append(R("error", kind, _error_source(provider, kind),
                       f"a request breaking a rule marked x-error {kind}: the catalogue's {kind} type and code",
                       error_kind=kind))
    param = error["properties"]["error"]["properties"].get("param", {})
    if "request id" in param.get("description", "").lower():
        rules.append(R("error.param", "request-id", source_of(error, "type") or "doc",
                       "error.param carries the request id (the x-request-id header)"))
    else:
        rules.append(R("error.param", "field-path", "assumption",
                       "error.param names the offending field as a JSON path"))
    return tuple(rules)


@cache
def mock_rules(provider: str) -> tuple[Rule, ...]:
    return (
        Rule(provider, "mock", "determinism", "same-request-same-bytes", "assumption",
             "the mock answers the same request with byte-identical images (b64_json and url)"),
        Rule(provider, "mock", "determinism", "seed-changes-image", "assumption",
             "the mock draws a different image when the seed changes"),
    )


def all_rules(provider: str) -> tuple[Rule, ...]:
    return request_rules(provider) + response_rules(provider) + protocol_rules(provider) + mock_rules(provider)

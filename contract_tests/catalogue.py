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

Conditional rules (``allOf`` entries of ``if`` / ``then``, such as one model's own limits)
are rules of their ``then`` branch, named with their condition:
``<provider>::parameters.n::maximum(model=<name>)[upstream]``. A request checking one
satisfies the condition, and a mutation breaking it keeps the condition true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mockserver.core.schemas import (
    load_schema,
    objects_in,
    placeholders,
    strict_variant,
)

from .providers import (
    KEY_ENV,
    NAMES,
    PATHS,
    api,
    if_holds,
    label,
    property_at,
    resolve,
    source_along,
    source_of,
)

PROVIDERS = NAMES  # every provider of the mock's registry, in its order
__all__ = ["KEY_ENV", "PATHS", "PROVIDERS", "Condition", "Rule", "all_rules", "load_schema", "recorded_rules", "resolve"]

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
class Condition:
    """The ``if`` of an ``allOf`` branch: the rules of its ``then`` hold only when it does."""

    label: str  # "model=qwen-image-edit"
    branch: tuple[Any, ...]  # schema path of the allOf entry, e.g. ("allOf", 2)
    at: tuple[Any, ...]  # the instance the condition is about ("[]" for every item)
    schema: dict[str, Any]  # the if schema

    def holds(self, body: Any) -> bool:
        """Whether the condition holds for ``body`` (for each instance it is about)."""
        instances = [body]
        for step in self.at:
            nxt = []
            for value in instances:
                if step == "[]" and isinstance(value, list):
                    nxt += value
                elif isinstance(value, dict) and step in value:
                    nxt.append(value[step])
            instances = nxt
        return bool(instances) and all(if_holds(self.schema, value) for value in instances)


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
    variant: str = ""  # response rules: which valid requests they need (any, inline, link, several)
    extra: tuple[tuple[str, Any], ...] = field(default=())
    condition: Condition | None = None  # rules of a then branch: when they apply

    @property
    def id(self) -> str:
        return f"{self.provider}::{self.field}::{self.keyword}[{self.source}]"

    @property
    def meaning(self) -> str:
        return MEANING.get(self.source, "")

    @property
    def base_keyword(self) -> str:
        """The keyword without its qualifiers: ``maximum`` for ``maximum(model=x)(strict)``."""
        return self.keyword.split("(")[0]

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)


def field_label(instance_path: tuple[Any, ...]) -> str:
    text = ""
    for part in instance_path:
        if part == "[]":
            text += "[]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(body)"


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


def describe_condition(schema: dict[str, Any], fallback: str) -> str:
    """``model=qwen-image-edit`` for ``{"properties": {"model": {"const": ...}}}``, values of
    an enum joined by commas; the branch's place when the condition says something else."""
    parts = []
    for name, sub in schema.get("properties", {}).items():
        if isinstance(sub, dict) and "const" in sub:
            parts.append(f"{name}={sub['const']}")
        elif isinstance(sub, dict) and "enum" in sub:
            parts.append(f"{name}={','.join(str(v) for v in sub['enum'])}")
        else:
            return fallback
    extra = set(schema) - {"properties", "required", "type", "description"}
    return ";".join(parts) if parts and not extra else fallback


# x-size: its limits, each a rule of its own, and the text of each
SIZE_LIMITS = {
    "minPixels": "must total at least {} pixels",
    "maxPixels": "must total at most {} pixels",
    "minSide": "must have each side at least {} pixels",
    "maxSide": "must have each side at most {} pixels",
}


class _Walker:
    """Walks one request schema, yielding a rule per constraint keyword."""

    def __init__(self, provider: str, root: dict[str, Any], strict_names: set[tuple]) -> None:
        self.provider = provider
        self.root = root
        self.rules: list[Rule] = []
        self.strict_names = strict_names  # (schema_path, keyword) present only in strict mode

    def walk(self, node: Any, schema_path: tuple, instance_path: tuple, inherited: str | None,
             raw_nodes: tuple, condition: Condition | None = None) -> None:
        node = resolve(self.root, node)
        if not isinstance(node, dict):
            return
        nodes = raw_nodes + (node,)
        label = field_label(instance_path)
        when = f"({condition.label})" if condition else ""
        when_text = f" when {condition.label}" if condition else ""

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
                keyword=keyword + when + ("(strict)" if strict_only else ""), source=src,
                description=description + when_text, strict_only=strict_only, schema_path=path,
                instance_path=inst, value=value, extra=tuple(sorted(extra.items())), condition=condition,
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
            if "if" in part:
                continue  # conditional branches: walked last, below
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
                self.walk(part, schema_path + ("allOf", index), instance_path, inherited, nodes, condition)
        if "x-size" in node:
            xs = node["x-size"]
            src = source_of(xs, "x-size") or source("x-size")
            for limit, text in SIZE_LIMITS.items():
                if limit in xs:
                    add("semantic", f"x-size.{limit}", xs, schema_path, instance_path,
                        f"{label} {text.format(xs[limit])}", src, size_rule=limit)
        if "x-image" in node:
            self.add_image_rules(node, instance_path, schema_path, source, condition)
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
            self.walk(sub, schema_path + ("properties", name), instance_path + (name,), inherited, nodes, condition)
        if isinstance(node.get("items"), dict):
            self.walk(node["items"], schema_path + ("items",), instance_path + ("[]",), inherited, nodes, condition)
        for index, part in enumerate(node.get("allOf", [])):
            part = resolve(self.root, part)
            if "if" not in part:
                continue
            if "else" in part or condition is not None:
                raise NotImplementedError(f"{self.provider}: only if/then branches, one level deep, are supported")
            branch = schema_path + ("allOf", index)
            inner = Condition(describe_condition(part["if"], f"allOf[{index}]"), branch, instance_path, part["if"])
            self.walk(part.get("then", {}), branch + ("then",), instance_path, inherited, nodes + (part,), inner)

    def add_image_rules(self, node: dict[str, Any], instance_path: tuple, schema_path: tuple, source,
                        condition: Condition | None) -> None:
        rules = node["x-image"]
        own = rules.get("x-source", {})
        label = field_label(instance_path)
        when = f"({condition.label})" if condition else ""
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
                self.provider, "semantic", label, f"x-image.{sub}{when}" + ("(strict)" if strict_only else ""), src,
                text, strict_only=strict_only, instance_path=instance_path, value=rules,
                schema_path=schema_path, extra=(("image_rule", sub),), condition=condition,
            ))


def _schema_keys(rules: list[Rule]) -> set[tuple]:
    return {(r.schema_path, r.base_keyword) for r in rules if r.kind == "schema"}


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


def conditional_rules(provider: str) -> tuple[Rule, ...]:
    """The rules of ``then`` branches: those that hold only under a condition."""
    return tuple(rule for rule in request_rules(provider) if rule.condition is not None)


def _walk(provider: str, schema: dict[str, Any], strict_keys: set[tuple]) -> list[Rule]:
    walker = _Walker(provider, schema, strict_keys)
    walker.walk(schema, (), (), source_of(schema, "type"), ())
    return walker.rules


# --------------------------------------------------------------------------- other rules


def _error_source(provider: str, kind: str) -> str:
    return load_schema(provider, "error")["x-errors"][kind].get("x-source", "assumption")


WEAKEST_FIRST = ("assumption", "upstream", "doc")


def _weakest(sources: list[str]) -> str:
    return min(sources, key=WEAKEST_FIRST.index) if sources else "assumption"


def output_size_source(provider: str) -> str:
    """The source of the output size rule: a size field's default where the request has one
    (its default decides), else the weakest source of the ``x-output-size`` blocks that may
    decide it (one per model where the schema has one per model)."""
    request = load_schema(provider, "request")
    for prop in request.get("properties", {}).values():
        if isinstance(prop, dict) and "x-size" in prop and "default" in prop:
            return source_of(prop, "default") or source_of(prop, "type") or "doc"
    sources = []
    for node in objects_in(request):
        if "x-output-size" in node:
            own = node["x-output-size"].get("x-source", source_of(node, "x-output-size"))
            sources += list(own.values()) if isinstance(own, dict) else [own or "assumption"]
    return _weakest(sources)


@cache
def response_rules(provider: str) -> tuple[Rule, ...]:
    R = lambda field, keyword, source, text, variant="any", **extra: Rule(  # noqa: E731
        provider, "response", field, keyword, source, text, variant=variant, extra=tuple(sorted(extra.items())))
    where = api(provider)
    response = load_schema(provider, "response")
    body_src = source_of(response, "type") or "doc"
    images = label(where.images, "response")
    images_src = source_along(response, where.images, default=body_src)
    size_src = output_size_source(provider)
    rules = [
        R("response", "status-200", body_src, "a valid request is answered 200"),
        R("response", "content-type", body_src, "the answer is application/json"),
        R("response", "schema", body_src, "the body validates against response.json"),
        R(images, "count", images_src, f"{label(where.images)} holds exactly n items (n's default when absent)"),
        R(images, "count-several", images_src,
          f"asked for two images (where the request allows it), {label(where.images)} holds both", variant="several"),
        R(images, "distinct", images_src,
          f"asked for several images, {label(where.images)} holds different images: none repeats another "
          "(n images made, not one image n times)", variant="several"),
    ]
    item = property_at_images(response, where.images)
    item_props = item.get("properties", {})
    if where.b64_key and where.format:
        rules.append(R(f"{images}[].{where.b64_key}", "image-size", size_src,
                       f"asked for base64 output, each item's {where.b64_key} decodes to an image of the requested "
                       "size", variant="inline"))
        if where.b64_form:
            node = resolve(response, item_props.get(where.b64_key, {}))
            form = ("plain base64, not a data: URI" if where.b64_form == "plain"
                    else "a data:image/...;base64, URI, not bare base64")
            rules.append(R(f"{images}[].{where.b64_key}", "b64-form",
                           source_of(node, "pattern") or source_of(node, "type") or body_src,
                           f"asked for base64 output, each item's {where.b64_key} is {form}, as documented",
                           variant="inline", form=where.b64_form))
    rules.append(R(f"{images}[].{where.url_key}", "image-size", size_src,
                   f"asked for links (or by default), each item's {where.url_key} downloads as an image of the "
                   "requested size", variant="link"))
    url_node = resolve(response, item_props.get(where.url_key, {}))
    if isinstance(url_node, dict) and url_node.get("x-expires-after"):
        lifetime = url_node["x-expires-after"]
        rules.append(R(f"{images}[].{where.url_key}", "downloads-again",
                       source_of(url_node, "x-expires-after") or source_of(url_node, "type") or body_src,
                       f"each item's {where.url_key} downloads again, the same image: a link lasts "
                       f"{lifetime} s (x-expires-after), not one download", variant="link", lifetime=lifetime))
    png_variant = "inline" if where.b64_key and where.format else "link"
    rules.append(R(f"{images}[]", "png", "upstream", "output images are PNG (upstream returns PNG)",
                   variant=png_variant))
    if where.created:
        rules.append(R(label(where.created, "response"), "plausible", source_along(response, where.created, "type",
                                                                                body_src),
                       "created is the Unix time in seconds: within a day of now (or the --frozen-time given)"))
    if where.request_id:
        rules.append(R(label(where.request_id, "response"), "request-id",
                       source_along(response, where.request_id, "type", body_src),
                       "the body carries the request id (equal to the x-request-id header where there is one)"))
    if where.width and where.height:
        common = tuple(a for a, b in zip(where.width, where.height) if a == b)
        rules.append(R(label(common, "response"), "size", source_along(response, where.width, "type", body_src),
                       f"{label(where.width)} and {label(where.height)} give the size of the images returned"))
    rules += [
        R("response", "x-request-id", "assumption", "the answer carries an x-request-id header"),
        R("request", "unknown-field-ignored", "assumption",
          "an unknown top-level field is ignored (answered 200), outside strict mode"),
        R("response", "strict-schema", body_src,
          "the body validates against response.json with its x-strict keywords applied (--strict-mode)"),
    ]
    if where.revised_prompt_key:
        node = item_props.get(where.revised_prompt_key, {})
        rules.append(R(f"{images}[].{where.revised_prompt_key}", "present", source_of(node, "type") or body_src,
                       f"with prompt rewriting on (its default), each item has a {where.revised_prompt_key}"))
    return tuple(rules)


def property_at_images(response: dict[str, Any], images: tuple[str, ...]) -> dict[str, Any]:
    """The schema of one item of the image list."""
    return resolve(response, property_at(response, images).get("items", {}))


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
          "a body that is not JSON: 400 with the catalogue's invalid_json code"),
        R("error", "invalid_parameter", _error_source(provider, "invalid_parameter"),
          "an out-of-range value: 400 with the catalogue's invalid_parameter code"),
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
                       f"a request breaking a rule marked x-error {kind}: the catalogue's {kind} code",
                       error_kind=kind))
    envelope = placeholders(error["x-envelope"])
    if "request_id" in envelope:
        path = envelope["request_id"]
        name = label(path) if path[:1] == ("error",) else label(path, "error")
        rules.append(R(name, "request-id", source_along(error, path, "type", source_of(error, "type") or "doc"),
                       f"the error body's {label(path)} carries the request id (the x-request-id header)"))
    if "param" in envelope:
        path = envelope["param"]
        name = label(path) if path[:1] == ("error",) else label(path, "error")
        rules.append(R(name, "field-path", "assumption",
                       f"the error body's {label(path)} names the offending field as a JSON path"))
    return tuple(rules)


@cache
def mock_rules(provider: str) -> tuple[Rule, ...]:
    return (
        Rule(provider, "mock", "determinism", "same-request-same-bytes", "assumption",
             "the mock answers the same request with byte-identical images (inline and links)"),
        Rule(provider, "mock", "determinism", "seed-changes-image", "assumption",
             "the mock draws a different image when the seed changes"),
    )


@cache
def recorded_rules(provider: str) -> tuple[Rule, ...]:
    """Rules only a cassette checks (``--cassette``): what every recorded error answer must be,
    whatever the request was."""
    error = load_schema(provider, "error")
    source = source_of(error, "type") or "assumption"
    return (
        Rule(provider, "recorded", "error", "envelope", source,
             "every recorded error answer is JSON in the provider's error envelope (error.json)"),
        Rule(provider, "recorded", "error", "catalogued", source,
             "every recorded error answer's status and code (and type) are an entry of the error catalogue "
             "(error.json x-errors)"),
    )


def all_rules(provider: str) -> tuple[Rule, ...]:
    return request_rules(provider) + response_rules(provider) + protocol_rules(provider) + mock_rules(provider)

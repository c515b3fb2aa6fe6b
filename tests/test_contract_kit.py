"""The contract kit's own parts: the rule catalogue covers every constraint of the schemas,
each mutation breaks its rule and only it (as the mock's own validator sees it too), the
first valid request is the cheap one, and nothing secret or bulky reaches a report."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract_tests import SUITE_DIR
from contract_tests.catalogue import CONSTRAINTS, PROVIDERS, all_rules, conditional_rules, request_rules
from contract_tests.checks import requested_size
from contract_tests.mutations import NoCandidate, breaks_only, draw_violation
from contract_tests.report import Exchange, Report, Result, redact
from contract_tests.strategies import Mode, valid_requests
from mockserver.core.schemas import RequestSchema, load_schema, objects_in, strict_variant

FAST = settings(max_examples=3, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
STRUCTURE = {"properties", "items", "$defs", "allOf"}


def keyword_occurrences(schema: dict[str, Any]) -> Counter:
    """Constraint keywords of a schema, counted by hand over the raw JSON: what the
    catalogue must have a rule for (contains clauses and anyOf branches count as one rule
    each; a type fixed by a sibling enum/const is covered by that enum/const)."""
    counts: Counter = Counter()

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key in CONSTRAINTS and key != "required":
                if key == "type" and ("enum" in node or "const" in node):
                    continue
                if key == "not" and value == {}:
                    continue  # a forbidden property: counted below, with its parent's properties
                counts[key] += 1
            if key == "required":
                counts["required"] += len(value)
            if key == "additionalProperties" and value is False:
                counts["additionalProperties"] += 1
        for name, sub in node.get("properties", {}).items():
            if isinstance(sub, dict) and sub.get("not") == {}:
                counts["not"] += 1
            else:
                walk(sub)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        for part in node.get("allOf", []):
            if "if" in part:
                walk(part.get("then", {}))  # a condition's own keywords are no rules
                continue
            walk({k: v for k, v in part.items() if k not in ("contains", "minContains", "maxContains")})
            if "contains" in part:
                counts["minContains"] += part.get("minContains", 1) > 0
                counts["maxContains"] += "maxContains" in part
        for sub in node.get("$defs", {}).values():
            walk(sub)

    walk(schema)
    return +counts


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_constraint_of_the_schema_has_a_rule(provider: str) -> None:
    schema = load_schema(provider, "request")
    rules = [r for r in request_rules(provider) if r.kind == "schema"]
    lenient = Counter(r.keyword.split("(")[0] for r in rules if not r.strict_only)
    assert lenient == keyword_occurrences(schema)
    everything = Counter(r.keyword.split("(")[0] for r in rules)
    assert everything == keyword_occurrences(strict_variant(schema))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_x_size_and_x_image_rule_has_a_rule(provider: str) -> None:
    schema = load_schema(provider, "request")
    semantic = Counter(r.keyword.split("(")[0] for r in request_rules(provider) if r.kind == "semantic")
    limits: Counter = Counter()
    for node in objects_in(schema):
        if isinstance(node.get("x-size"), dict):
            limits.update(f"x-size.{k}" for k in ("minPixels", "maxPixels", "minSide", "maxSide") if k in node["x-size"])
    assert Counter({k: v for k, v in semantic.items() if k.startswith("x-size.")}) == limits
    assert {"x-image.base64", "x-image.decodes", "x-image.formats", "x-image.maxBytes", "x-image.maxPixels",
            "x-image.recommendedSide"} <= set(semantic)


def test_conditional_rules_come_from_then_branches() -> None:
    """Each rule of an if/then branch is named with its condition, and holds only under it."""
    found = {provider: [r.id for r in conditional_rules(provider)] for provider in PROVIDERS}
    branches = {provider: sum(1 for node in objects_in(load_schema(provider, "request"))
                              for part in node.get("allOf", []) if isinstance(part, dict) and "if" in part)
                for provider in PROVIDERS}
    for provider, count in branches.items():
        assert bool(found[provider]) == bool(count), (provider, found[provider])
    assert set(found["dashscope"]) == {
        "dashscope::parameters.size::x-size.minPixels(model=qwen-image-2.0-pro,qwen-image-2.0)[upstream]",
        "dashscope::parameters.size::x-size.maxPixels(model=qwen-image-2.0-pro,qwen-image-2.0)[upstream]",
        "dashscope::parameters.size::x-size.minSide(model=qwen-image-edit-max,qwen-image-edit-plus)[upstream]",
        "dashscope::parameters.size::x-size.maxSide(model=qwen-image-edit-max,qwen-image-edit-plus)[upstream]",
        "dashscope::parameters.n::maximum(model=qwen-image-edit)[upstream]",
        "dashscope::parameters.size::not(model=qwen-image-edit)[upstream]",
    }
    edit = next(r for r in conditional_rules("dashscope") if r.id.startswith("dashscope::parameters.n::maximum"))
    assert edit.condition is not None and edit.condition.holds({"model": "qwen-image-edit"})
    assert not edit.condition.holds({"model": "qwen-image-edit-plus"})
    # the condition's own keywords (the model enum of each if) are no rules of their own
    assert not [r for r in request_rules("dashscope") if "if" in r.schema_path]


@pytest.mark.parametrize("rule", conditional_rules("dashscope"), ids=lambda rule: rule.id)
def test_valid_requests_meet_the_condition_of_their_rule(rule) -> None:
    seen: list[dict] = []

    @FAST
    @given(valid_requests(Mode("dashscope", branch=rule.condition.branch)))
    def draw(body: dict) -> None:
        assert rule.condition.holds(body), (rule.id, body["model"])
        seen.append(body)

    draw()
    assert seen, rule.id


def test_valid_requests_cover_every_model_with_its_own_n_and_size() -> None:
    """Drawn bodies are valid for each model: n and size within that model's own rules."""
    mock_schema = mock_request_schema("dashscope")
    models: Counter = Counter()

    @settings(max_examples=150, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(valid_requests(Mode("dashscope")))
    def draw(body: dict) -> None:
        assert not mock_schema.violations(body, strict=False), body
        parameters = body.get("parameters", {})
        if body["model"] == "qwen-image-edit":
            assert "size" not in parameters and parameters.get("n", 1) == 1
        if "size" in parameters:
            assert "x" not in parameters["size"]  # W*H only
        models[body["model"]] += 1

    draw()
    assert set(models) == set(load_schema("dashscope", "request")["properties"]["model"]["allOf"][0]["enum"])


OUTPUT_SIZES = [
    # (model, input image, expected output) per x-output-size: 2.0 series scaled into its pixel
    # range, edit-plus/max and qwen-image-edit to about 1024*1024 pixels with the input's ratio
    ("qwen-image-2.0-pro", (384, 576), (419, 628)),
    ("qwen-image-2.0", (1024, 768), (1024, 768)),
    ("qwen-image-edit-plus", (384, 576), (836, 1254)),
    ("qwen-image-edit", (512, 512), (1024, 1024)),
]


@pytest.mark.parametrize(("model", "side", "expected"), OUTPUT_SIZES)
def test_requested_size_follows_each_models_output_size(model: str, side: tuple[int, int],
                                                        expected: tuple[int, int]) -> None:
    from contract_tests.semantics import data_uri, make_image

    uri = data_uri(make_image("PNG", *side, (9, 9, 9)), "PNG")
    body = {"model": model, "input": {"messages": [{"role": "user", "content": [
        {"image": "https://example.com/first.png"}, {"image": uri}, {"text": "t"}]}]}}
    size = requested_size("dashscope", body)
    assert (size.width, size.height) == expected and size.tolerance == 1
    # the last input decides; a URL there gives the fallback
    body["input"]["messages"][0]["content"].reverse()
    body["input"]["messages"][0]["content"].append(body["input"]["messages"][0]["content"].pop(0))
    fallback = requested_size("dashscope", body)
    assert (fallback.width, fallback.height) == (1024, 1024) and fallback.tolerance == 0
    if model != "qwen-image-edit":
        explicit = requested_size("dashscope", {**body, "parameters": {"size": "640*1536"}})
        assert (explicit.width, explicit.height) == (640, 1536) and explicit.tolerance == 0


def test_the_kit_names_no_provider() -> None:
    """Provider names, paths and keys come from the registry, everything else from the
    schema folders: no module of the kit names a provider, nor uses Hypothesis internals."""
    from mockserver.providers import PROVIDERS as REGISTRY

    names = [p.name for p in REGISTRY] + [p.path for p in REGISTRY] + [p.api_key_env for p in REGISTRY]
    for module in sorted(SUITE_DIR.glob("*.py")):
        text = module.read_text().lower()
        assert not [name for name in names if name.lower() in text], module.name
        assert "_hypothesis_internal" not in text, module.name
    assert PROVIDERS == tuple(p.name for p in REGISTRY)


def test_rule_ids_are_unique_and_sourced() -> None:
    for provider in PROVIDERS:
        ids = [rule.id for rule in all_rules(provider)]
        assert len(ids) == len(set(ids))
        assert all(rule.source in ("doc", "upstream", "assumption") for rule in all_rules(provider))
    assert "powertokens::n::maximum[doc]" in [r.id for r in all_rules("powertokens")]


# every rule as documented, and the strict-only ones in strict mode
RULES = [(rule, rule.strict_only) for provider in PROVIDERS for rule in request_rules(provider)]


@cache
def mock_request_schema(provider: str) -> RequestSchema:
    return RequestSchema(load_schema(provider, "request"))


@pytest.mark.parametrize(("rule", "strict"), RULES, ids=[f"{r.id}{'-strict' if s else ''}" for r, s in RULES])
def test_mutation_breaks_its_rule_alone_and_the_mock_agrees(rule, strict: bool) -> None:
    mock_schema = mock_request_schema(rule.provider)
    found: list[Any] = []

    @FAST
    @given(st.data())
    def check(data: Any) -> None:
        branch = rule.condition.branch if rule.condition else ()
        base = data.draw(valid_requests(Mode(rule.provider, strict=strict, mock=True, branch=branch)))
        assert not mock_schema.violations(base, strict=strict)
        try:
            bad = draw_violation(data, rule, base, strict)
        except NoCandidate:
            return
        assert breaks_only(bad, rule, strict)
        assert not breaks_only(base, rule, strict)
        if rule.kind == "schema":
            violations = mock_schema.violations(bad, strict=strict)
            keywords = {v.keyword for v in violations}
            # jsonschema-rs, the mock's validator, names both contains bounds "contains"
            expected = {"contains"} if "Contains" in rule.keyword else {rule.keyword.split("(")[0]}
            # a value of the wrong type also misses an enum beside it; the type error is answered
            implied = {"enum", "const"} if rule.keyword == "type" else set()
            assert violations and violations[0].keyword in expected, (keywords, rule.id)
            assert keywords <= expected | implied, (keywords, rule.id)
        else:
            assert not mock_schema.violations(bad, strict=strict)
        found.append(bad)

    check()
    assert found, f"no violation of {rule.id} was built"


def test_a_body_breaking_two_rules_is_refused() -> None:
    rule = next(r for r in request_rules("modelverse") if r.id == "modelverse::n::maximum[doc]")
    body = {"model": "Qwen/Qwen-Image-Edit", "prompt": "p", "image": "https://example.com/a.png", "n": 99}
    assert breaks_only(body, rule, False)
    assert not breaks_only({**body, "steps": 0}, rule, False)
    assert not breaks_only({**body, "n": 1}, rule, False)


def test_the_first_valid_request_is_the_simplest() -> None:
    """On a live target with one example per rule, this is what is paid for."""
    seen: list[dict] = []

    @settings(max_examples=1, derandomize=True, database=None, deadline=None)
    @given(valid_requests(Mode("powertokens", mock=False)))
    def first(body: dict) -> None:
        seen.append(body)

    first()
    body = seen[0]
    assert set(body) == {"model", "input"}  # every optional field at its default: n=1, 512*512
    content = body["input"]["messages"][0]["content"]
    assert [sorted(item) for item in content] == [["image"], ["text"]]
    assert content[0]["image"].startswith("data:image/")  # inline: a real provider is never sent a URL to fetch


def test_redaction_removes_keys_and_image_bytes() -> None:
    from contract_tests.semantics import data_uri, make_image

    uri = data_uri(make_image("PNG", 400, 400, (1, 2, 3)), "PNG")
    redacted = redact({"image": uri, "note": f"bad value '{uri[:120]}'",
                       "url": "https://cdn.example/x.png?Signature=abc&OSSAccessKeyId=k"})
    text = json.dumps(redacted)
    assert "iVBORw0KGgo" not in text and "Signature" not in text
    assert redacted["image"]["<image>"]["width"] == 400 and redacted["image"]["<image>"]["format"] == "PNG"
    exchange = Exchange("POST", "https://api.example/v1/images/edits", {"Authorization": "Bearer sk-secret"},
                        json.dumps({"image": uri}).encode(), status=400, key_env="POWERTOKENS_API_KEY")
    evidence = json.dumps(exchange.evidence())
    assert "sk-secret" not in evidence and "iVBORw0KGgo" not in evidence
    curl = exchange.curl("/tmp/body.json")
    assert "sk-secret" not in curl and "$POWERTOKENS_API_KEY" in curl and "@/tmp/body.json" in curl


def test_report_is_written_as_markdown_and_json(tmp_path: Path) -> None:
    rule = all_rules("modelverse")[0]
    report = Report({"description": "unit", "strict": False})
    report.add(Result(rule, "fail", message="AssertionError: expected 400, got 200",
                      exchanges=[Exchange("POST", "http://127.0.0.1:9/v1/images/generations", {}, b"{}", status=200)]))
    md, js = report.write(tmp_path / "out.md")
    assert md == tmp_path / "out.md" and js == tmp_path / "out.json"
    data = json.loads(js.read_text())
    entry = data["providers"]["modelverse"]["rules"][0]
    assert entry["outcome"] == "fail" and entry["evidence"][0]["curl"].startswith("curl ")
    assert (tmp_path / "out.requests").is_dir()
    assert rule.id in md.read_text() and "Reproduce" in md.read_text()


def test_check_command_is_wired() -> None:
    from mockserver.cli import build_parser
    from mockserver.cli.check import pytest_argv

    args = build_parser().parse_args(["check", "--base-url", "http://127.0.0.1:1", "--provider", "modelverse",
                                      "--max-requests", "3", "--strict-mode", "--", "-k", "n::"])
    assert args.command == "check"
    argv = pytest_argv(args, "/tmp/r")
    assert argv[0].endswith("contract_tests")
    assert ["--base-url", "http://127.0.0.1:1"] == argv[argv.index("--base-url"):argv.index("--base-url") + 2]
    assert "--strict-mode" in argv and argv[-2:] == ["-k", "n::"]


# --------------------------------------------------------------------------- the plan of paid requests

PLANS = {
    "powertokens": ["n-max", "non-square", "size-max", "images-max", "all-optional", "all-absent"],
    "modelverse": ["n-max", "non-square", "all-optional", "all-absent"],
    "dashscope": [
        "n-max(model=qwen-image-2.0-pro,qwen-image-2.0)",
        "n-max(model=qwen-image-edit-max,qwen-image-edit-plus)",
        "non-square(model=qwen-image-2.0-pro,qwen-image-2.0)",
        "non-square(model=qwen-image-edit-max,qwen-image-edit-plus)",
        "non-square(model=qwen-image-edit)",
        "size-max(model=qwen-image-2.0-pro,qwen-image-2.0)",
        "size-max(model=qwen-image-edit-max,qwen-image-edit-plus)",
        "images-max(model=qwen-image-2.0-pro,qwen-image-2.0)",
        "images-max(model=qwen-image-edit-max,qwen-image-edit-plus)",
        "images-max(model=qwen-image-edit)",
        "all-optional(model=qwen-image-2.0-pro,qwen-image-2.0)",
        "all-optional(model=qwen-image-edit-max,qwen-image-edit-plus)",
        "all-optional(model=qwen-image-edit)",
        "all-absent(model=qwen-image-2.0-pro,qwen-image-2.0)",
    ],
}


def test_the_plan_of_each_provider() -> None:
    """Items of each kind, each case's before the next kind; those a case cannot have left
    out with the reason."""
    from contract_tests.plan import KINDS, build_plan

    for provider in PROVIDERS:
        plan = build_plan(provider)
        assert [item.name for item in plan] == PLANS[provider], provider
        assert [KINDS.index(item.kind) for item in plan] == sorted(KINDS.index(item.kind) for item in plan)
        assert all(item.covers for item in plan)
    left = " ".join(build_plan("dashscope").left_out)
    assert "n-max(model=qwen-image-edit): parameters.n takes one value only (1)" in left
    assert "size-max(model=qwen-image-edit): no size field applies" in left
    assert "size-max: no size field applies" in build_plan("modelverse").left_out


def count_images(provider: str, body: dict) -> int:
    from contract_tests.checks import images_in

    return len(images_in(provider, body))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_planned_requests_are_valid_at_the_schemas_bounds(provider: str) -> None:
    """Every planned body is valid (the schema, x-size / x-image, its case's condition; the
    mock's own validator agrees), and it asks for what its name says, by the schema's
    numbers: n at its maximum, a non-square output, the size at its bounds, maxContains
    images, every optional field or none."""
    from contract_tests.checks import requested_size
    from contract_tests.plan import build_plan
    from contract_tests.providers import api, get_at
    from contract_tests.semantics import parse_size
    from contract_tests.strategies import semantic_problems, validator

    where = api(provider)
    schema = load_schema(provider, "request")
    mock_schema = mock_request_schema(provider)
    branches = {describe(part["if"]): part for part in schema.get("allOf", []) if "if" in part}
    formats = set()
    for item in build_plan(provider):
        body = item.body
        assert validator(provider, False).is_valid(body) and not semantic_problems(body, provider, False), item.name
        assert not mock_schema.violations(body, strict=False), item.name
        then = branches[item.case]["then"] if item.case else {}
        if item.case:
            assert body["model"] in branches[item.case]["if"]["properties"]["model"].get(
                "enum", [branches[item.case]["if"]["properties"]["model"].get("const")])
        count = get_at(body, where.count, None)
        size_parts = ("parameters", "size") if provider == "dashscope" else ("size",)
        size = get_at(body, size_parts, None)
        size_rules = (then.get("properties", {}).get("parameters", {}).get("properties", {}).get("size", {})
                      .get("x-size") if item.case else schema["properties"].get("size", {}).get("x-size"))
        if item.kind == "n-max":
            assert count == (schema["properties"]["parameters"]["properties"]["n"] if provider == "dashscope"
                             else schema["properties"]["n"])["maximum"]
        if item.kind == "non-square":
            expected = requested_size(provider, body)
            assert expected.width != expected.height, item.name
        if item.kind == "size-max":
            width, height = parse_size(size, size_rules)
            assert width == height and (width * height == size_rules.get("maxPixels") or width == size_rules.get("maxSide"))
        if item.kind == "images-max":
            assert count_images(provider, body) == 3  # maxContains of the image clause
            if size_rules:
                width, height = parse_size(size, size_rules)
                assert width * height == size_rules.get("minPixels", 0) or width == size_rules.get("minSide")
        if item.kind == "all-optional":
            optional = {name for name, sub in schema["properties"].items()
                        if name not in schema["required"] and sub.get("not") != {}}  # not forbidden
            assert optional == set(body) - set(schema["required"]), (item.name, optional ^ set(body))
            if provider == "dashscope":
                expected_params = set(schema["properties"]["parameters"]["properties"]) - (
                    {"size"} if "not" in then.get("properties", {}).get("parameters", {}).get("properties", {})
                    .get("size", {}) else set())
                assert set(body["parameters"]) == expected_params, item.name
        if item.kind == "all-absent":
            assert set(body) == set(schema["required"])
        if where.format:
            formats.add(get_at(body, where.format, where.format_default))
    if where.format:
        assert formats == {where.inline, where.link}  # each response format


def describe(condition: dict) -> str:
    from contract_tests.catalogue import describe_condition

    return describe_condition(condition, "")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_planned_minimal_request_is_the_first_drawn_one(provider: str) -> None:
    """all-absent is what drawn examples send first: on a live target it costs nothing more."""
    from contract_tests.plan import build_plan

    seen: list[dict] = []

    @settings(max_examples=1, derandomize=True, database=None, deadline=None)
    @given(valid_requests(Mode(provider, mock=True)))
    def first(body: dict) -> None:
        seen.append(body)

    first()
    absent = [item for item in build_plan(provider) if item.kind == "all-absent"]
    assert len(absent) == 1 and dict(absent[0].body) == seen[0]

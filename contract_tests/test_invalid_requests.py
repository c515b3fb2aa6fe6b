"""Invalid requests: for every constraint of the request schema and every x-size / x-image
rule, requests that break exactly that one rule, expecting 400 in the provider's error
envelope."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import reject

from .catalogue import Rule
from .checks import Body, error_catalogue, expect_error
from .mutations import NoCandidate, breaks_only, describe_failures, draw_violation, node_at
from .providers import api, property_at, with_value
from .recorded import check_rejections
from .session import Contract
from .strategies import request_schema, valid_requests, validator


def cheap(provider: str, body: dict[str, Any], rule: Rule, strict: bool = False) -> Body:
    """The valid body a mutation starts from, made as cheap as possible should the target
    wrongly accept it: the fewest images, links rather than inline output (each change kept
    only where the body stays valid)."""
    where = api(provider)
    schema = request_schema(provider, strict)
    check = validator(provider, strict)
    out: dict[str, Any] = Body(body)
    changes = []
    if tuple(rule.instance_path[:len(where.count)]) != where.count:
        low = property_at(schema, where.count).get("minimum")
        if low is not None:
            changes.append(lambda b: with_value(b, where.count, low))
    if where.format and tuple(rule.instance_path[:len(where.format)]) != where.format:
        changes.append(lambda b: where.with_format(b, "link"))
    for change in changes:
        changed = change(out)
        if check.is_valid(changed):
            out = Body(changed)
    return Body(out)


def error_kind(rule: Rule, strict: bool) -> str:
    """The x-error kind of the subschema holding the keyword (else invalid_parameter)."""
    if rule.kind != "schema":
        return "invalid_parameter"
    schema = request_schema(rule.provider, strict)
    from .catalogue import resolve

    kind, node = "invalid_parameter", schema
    for step in rule.schema_path[:-1]:
        node = resolve(schema, node)
        if isinstance(node, dict):
            kind = node.get("x-error", kind)
        node = node[step]
    node = resolve(schema, node)
    return node.get("x-error", kind) if isinstance(node, dict) else kind


def violating_request(data: Any, contract: Contract, rule: Rule) -> Any:
    """A request breaking ``rule`` alone: a mutation of a valid request (one that meets the
    rule's condition, for a conditional rule)."""
    mode = contract.mode(rule.provider, rule)
    base = cheap(rule.provider, data.draw(valid_requests(mode), label="valid request"), rule, contract.strict)
    try:
        bad = draw_violation(data, rule, base, contract.strict)
    except NoCandidate:
        reject()  # this valid body offers no place to break the rule alone; draw another
    # Checked again on the very value that is sent: it breaks this rule, and only this one.
    assert breaks_only(bad, rule, contract.strict), describe_failures(bad, rule.provider, contract.strict)
    return Body(bad) if isinstance(bad, dict) else bad


@pytest.mark.rules("schema", "semantic")
def test_rejected(rule: Rule, contract: Contract) -> None:
    contract.require(rule)
    kind = error_kind(rule, contract.strict)
    status = error_catalogue(rule.provider)[kind]["status"]
    if rule.kind == "schema" and rule.schema_path:
        node_at(rule.provider, contract.strict, rule.schema_path)  # the rule's keyword is where it says
    if contract.cassette:
        check_rejections(contract, rule, status)  # offline: the recorded requests breaking it (recorded.py)
        return

    def example(data: Any) -> None:
        bad = violating_request(data, contract, rule)
        exchange = contract.target.post(rule.provider, bad, paid=False)
        expect_error(exchange, rule.provider, status)

    contract.run(rule, example, paid=False)

"""Credentials, error codes and the HTTP edges: 401 for missing or bad keys, the error
catalogue's type and code for each kind of error, 404/405/413, and where the request id
goes (each field where the provider's ``x-envelope`` puts it)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from mockserver.core.schemas import json_path

from .catalogue import PATHS, PROVIDERS, Rule, request_rules
from .checks import (
    Body,
    error_catalogue,
    error_field_label,
    error_value,
    expect_error,
    expect_json,
    first_difference,
    same_field,
    shown,
)
from .mutations import NoCandidate, draw_violation
from .recorded import check_protocol
from .session import Contract
from .strategies import valid_requests
from .test_invalid_requests import cheap, error_kind, violating_request

VALUE_KEYWORDS = ("minimum", "maximum", "enum", "minLength", "pattern", "type", "const")


def valid_body(data: Any, contract: Contract, rule: Rule) -> Body:
    return cheap(rule.provider, data.draw(valid_requests(contract.mode(rule.provider)), label="valid request"), rule,
                 contract.strict)


def rules_of_kind(contract: Contract, provider: str, kind: str, keywords: tuple[str, ...] | None = None) -> list[Rule]:
    return [r for r in request_rules(provider)
            if r.kind == "schema" and not r.strict_only and error_kind(r, contract.strict) == kind
            and (keywords is None or r.keyword in keywords)]


def invalid_by(data: Any, contract: Contract, candidates: list[Rule]) -> tuple[Rule, Any]:
    assert candidates, "no schema rule to break for this check"
    chosen = data.draw(st.sampled_from(candidates), label="rule broken")
    return chosen, violating_request(data, contract, chosen)


# --------------------------------------------------------------------------- checks


def missing_token(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    def example(data: Any) -> None:
        exchange = contract.target.post(rule.provider, valid_body(data, contract, rule), auth=None, paid=False)
        expect_error(exchange, rule.provider, error_catalogue(rule.provider)["authentication"]["status"],
                     "authentication")
    return example


def malformed_token(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    key = contract.keys[rule.provider] or ""
    headers = ["Basic Y29udHJhY3Q6dGVzdA==", "Bearer", f"Token {key}", key, f"Bearer{key}"]

    def example(data: Any) -> None:
        header = data.draw(st.sampled_from(headers), label="Authorization")
        exchange = contract.target.post(rule.provider, valid_body(data, contract, rule), auth=header, paid=False)
        expect_error(exchange, rule.provider, error_catalogue(rule.provider)["authentication"]["status"],
                     "authentication")
    return example


def invalid_key(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    def example(data: Any) -> None:
        wrong = f"Bearer sk-contract-invalid-{secrets.token_hex(8)}"
        exchange = contract.target.post(rule.provider, valid_body(data, contract, rule), auth=wrong, paid=False)
        expect_error(exchange, rule.provider, error_catalogue(rule.provider)["authentication"]["status"],
                     "authentication")
    return example


NOT_JSON = [b'{"model": ', b"not json at all", b"{'model': 'single quotes'}", b'{"n": 1,}', b"\xff\xfe{}",
            b'{"n": NaN}']


def invalid_json(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    def example(data: Any) -> None:
        raw = data.draw(st.sampled_from(NOT_JSON), label="body")
        exchange = contract.target.post(rule.provider, raw=raw, paid=False)
        expect_error(exchange, rule.provider, error_catalogue(rule.provider)["invalid_json"]["status"], "invalid_json")
    return example


def error_code(kind: str) -> Callable[[Contract, Rule], Callable[[Any], None]]:
    def make(contract: Contract, rule: Rule) -> Callable[[Any], None]:
        candidates = rules_of_kind(contract, rule.provider, kind, VALUE_KEYWORDS if kind == "invalid_parameter" else None)

        def example(data: Any) -> None:
            _, bad = invalid_by(data, contract, candidates)
            exchange = contract.target.post(rule.provider, bad, paid=False)
            expect_error(exchange, rule.provider, error_catalogue(rule.provider)[kind]["status"], kind)
        return example
    return make


def body_too_large(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    limit = contract.options.max_body_bytes

    def example(data: Any) -> None:
        raw = b'{"padding": "' + b"x" * (limit + 1) + b'"}'
        exchange = contract.target.post(rule.provider, raw=raw, paid=False)
        expect_error(exchange, rule.provider, error_catalogue(rule.provider)["body_too_large"]["status"],
                     "body_too_large")
    return example


def not_found(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    def example(data: Any) -> None:
        path = PATHS[rule.provider].rsplit("/", 1)[0] + "/contract-tests-no-such-route"
        exchange = contract.target.post(rule.provider, valid_body(data, contract, rule), paid=False, path=path)
        status = error_catalogue(rule.provider)["not_found"]["status"]
        assert exchange.status == status, f"an unknown path: expected {status}, got {shown(exchange)}"
        body = expect_json(exchange)
        # the path may be outside any of this provider's routes (a gateway answers), so any
        # provider's error envelope will do: one with an error code where that envelope says
        assert any(isinstance(error_value(name, body, "code"), str) for name in PROVIDERS), (
            f"the 404 body is not an error object; {shown(exchange)}")
    return example


def method_not_allowed(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    def example(data: Any) -> None:
        exchange = contract.target.post(rule.provider, None, paid=False, method="GET")
        expect_error(exchange, rule.provider, error_catalogue(rule.provider)["method_not_allowed"]["status"],
                     "method_not_allowed")
    return example


def error_request_id(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    candidates = rules_of_kind(contract, rule.provider, "invalid_parameter")

    def example(data: Any) -> None:
        _, bad = invalid_by(data, contract, candidates)
        exchange = contract.target.post(rule.provider, bad, paid=False)
        assert exchange.error is None, exchange.error
        assert exchange.status is not None and exchange.status >= 400, f"expected an error, got {shown(exchange)}"
        assert exchange.response_headers.get("x-request-id", "").strip(), (
            f"the error answer has no x-request-id header (headers: {sorted(exchange.response_headers)})")
    return example


def body_has_request_id(contract: Contract, rule: Rule) -> Callable[[Any], None]:
    candidates = rules_of_kind(contract, rule.provider, "invalid_parameter")
    where = error_field_label(rule.provider, "request_id")

    def example(data: Any) -> None:
        _, bad = invalid_by(data, contract, candidates)
        exchange = contract.target.post(rule.provider, bad, paid=False)
        body = expect_error(exchange, rule.provider, 400)
        value = error_value(rule.provider, body, "request_id")
        header = exchange.response_headers.get("x-request-id")
        assert isinstance(value, str) and value.strip(), f"{where} is {value!r}, not a request id; {shown(exchange)}"
        assert header is None or value == header, f"{where} is {value!r}, the request id (x-request-id) is {header!r}"
    return example


def field_path_candidates(contract: Contract, rule: Rule) -> list[Rule]:
    # values replaced in place, so the first difference from the valid body is the field
    return [r for r in rules_of_kind(contract, rule.provider, "invalid_parameter", VALUE_KEYWORDS)
            if r.instance_path and r.instance_path[-1] != "[]"]


def one_per_field(candidates: list[Rule]) -> list[Rule]:
    """The first rule of each field: a field named wrongly only when it is nested, or only
    for some fields, shows up whichever example is drawn."""
    seen: dict[tuple, Rule] = {}
    for candidate in candidates:
        seen.setdefault(candidate.instance_path, candidate)
    return list(seen.values())


def param_is_field(contract: Contract, rule: Rule, candidates: list[Rule] | None = None) -> Callable[[Any], None]:
    candidates = candidates or field_path_candidates(contract, rule)
    where = error_field_label(rule.provider, "param")

    def example(data: Any) -> None:
        chosen = data.draw(st.sampled_from(candidates), label="rule broken")
        base = cheap(rule.provider, data.draw(valid_requests(contract.mode(rule.provider, chosen)),
                                              label="valid request"), chosen, contract.strict)
        try:
            bad = draw_violation(data, chosen, base, contract.strict)
        except NoCandidate:
            reject()
        where_bad = first_difference(base, bad)
        expected = json_path(where_bad or ())
        exchange = contract.target.post(rule.provider, Body(bad) if isinstance(bad, dict) else bad, paid=False)
        body = expect_error(exchange, rule.provider, 400)
        param = error_value(rule.provider, body, "param")
        assert same_field(param, expected), f"{where} is {param!r}; the offending field is {expected!r} ({chosen.id})"
    return example


PROTOCOL: dict[str, Callable[[Contract, Rule], Callable[[Any], None]]] = {
    "missing-token": missing_token,
    "malformed-token": malformed_token,
    "invalid-key": invalid_key,
    "invalid_json": invalid_json,
    "body_too_large": body_too_large,
    "not_found": not_found,
    "method_not_allowed": method_not_allowed,
    "x-request-id": error_request_id,
    "request-id": body_has_request_id,
    "field-path": param_is_field,
}


@pytest.mark.rules("protocol")
def test_protocol(rule: Rule, contract: Contract) -> None:
    contract.require(rule)
    if contract.cassette:
        # offline: the recorded exchanges each rule is about (recorded.py)
        check_protocol(contract, rule, {
            "invalid_parameter": lambda c, provider, kind: rules_of_kind(
                c, provider, kind, VALUE_KEYWORDS if kind == "invalid_parameter" else None),
            "field-path": field_path_candidates})
        return
    if rule.keyword == "field-path":
        # explicit examples first: one request per field that has a value rule (refused,
        # so not paid), then the drawn ones
        for chosen in one_per_field(field_path_candidates(contract, rule)):
            try:
                contract.run(rule, param_is_field(contract, rule, [chosen]), paid=False, examples=1)
            except Unsatisfiable:
                continue  # no violation of this field alone could be built from the simplest bodies
    make = PROTOCOL.get(rule.keyword) or error_code(rule.get("error_kind") or rule.keyword)
    contract.run(rule, make(contract, rule), paid=False)

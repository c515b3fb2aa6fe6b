"""Valid requests, drawn from the request schema with real input images: what must come back.

One test per response rule. Each draws valid requests (the first one is the simplest the
schema allows), sends them, and checks its one promise of the answer.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st

from .catalogue import Rule, load_schema
from .checks import (
    Body,
    b64_image,
    decode_image,
    expect_json,
    expect_ok,
    plausible_created,
    requested_format,
    requested_n,
    requested_size,
    response_validator,
    shown,
)
from .report import Exchange
from .session import Contract
from .strategies import valid_requests

UNKNOWN_FIELD = st.from_regex(r"x_contract_probe_[a-z]{1,8}", fullmatch=True)


def draw_valid(data: Any, contract: Contract, rule: Rule) -> Body:
    body = Body(data.draw(valid_requests(contract.mode(rule.provider)), label="valid request"))
    if rule.variant == "b64_json":
        body["response_format"] = "b64_json"
    elif rule.variant == "url" and requested_format(rule.provider, body) != "url":
        body["response_format"] = "url"
    return body


def items(exchange: Exchange) -> list[dict[str, Any]]:
    body = expect_ok(exchange)
    data = body.get("data") if isinstance(body, dict) else None
    assert isinstance(data, list), f"the answer has no data list; {shown(exchange)}"
    return data


# --------------------------------------------------------------------------- the checks


def check_status(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    assert exchange.error is None, f"no answer: {exchange.error}"
    assert exchange.status == 200, f"a valid request was not accepted: expected 200, got {shown(exchange)}"


def check_content_type(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    check_status(contract, rule, body, exchange)
    expect_json(exchange)


def check_schema(contract: Contract, rule: Rule, body: Body, exchange: Exchange, strict: bool = False) -> None:
    answer = expect_ok(exchange)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:200]}"
                for e in response_validator(rule.provider, strict).iter_errors(answer)]
    assert not problems, (f"the answer does not validate against {rule.provider}/response.json"
                          f"{' (x-strict applied)' if strict else ''}: {problems}; {shown(exchange)}")


def check_strict_schema(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    check_schema(contract, rule, body, exchange, strict=True)


def check_count(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    data = items(exchange)
    n = requested_n(rule.provider, body)
    assert len(data) == n, f"asked for n={n} ({'given' if 'n' in body else 'default'}), got {len(data)} items"


def check_b64_images(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    data = items(exchange)
    width, height = requested_size(rule.provider, body)
    assert data, "no images"
    for index, item in enumerate(data):
        assert "b64_json" in item, f"data[{index}] has no b64_json although response_format is b64_json: {list(item)}"
        image = b64_image(item["b64_json"], f"data[{index}].b64_json")
        assert image.size == (width, height), (
            f"data[{index}].b64_json is {image.size[0]}x{image.size[1]}, the request asks for {width}x{height}")


def check_url_images(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    data = items(exchange)
    width, height = requested_size(rule.provider, body)
    assert data, "no images"
    for index, item in enumerate(data):
        url = item.get("url")
        assert isinstance(url, str) and url, f"data[{index}] has no url although response_format is url: {list(item)}"
        download = contract.target.download(rule.provider, url)
        assert download.error is None, f"data[{index}].url could not be fetched: {download.error}"
        assert download.status == 200, (f"data[{index}].url answered {download.status}, not 200 "
                                        f"({download.response_body[:200]!r})")
        image = decode_image(download.response_body, f"the image at data[{index}].url")
        assert image.size == (width, height), (
            f"data[{index}].url is a {image.size[0]}x{image.size[1]} image, the request asks for {width}x{height}")


def check_png(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    data = items(exchange)
    for index, item in enumerate(data):
        assert "b64_json" in item, f"data[{index}] has no b64_json: {list(item)}"
        image = b64_image(item["b64_json"], f"data[{index}].b64_json")
        assert image.format == "PNG", f"data[{index}] is {image.format}, not PNG"


def check_created(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    answer = expect_ok(exchange)
    assert isinstance(answer, dict) and "created" in answer, f"the answer has no created; {shown(exchange)}"
    plausible_created(answer["created"], contract.options.frozen_time)


def check_request_id(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    check_status(contract, rule, body, exchange)
    assert exchange.response_headers.get("x-request-id", "").strip(), (
        f"the answer has no x-request-id header (headers: {sorted(exchange.response_headers)})")


def check_revised_prompt(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    data = items(exchange)
    for index, item in enumerate(data):
        value = item.get("revised_prompt")
        assert isinstance(value, str) and value, (
            f"data[{index}] has no revised_prompt although prompt_extend is "
            f"{'on' if 'prompt_extend' in body else 'on by default'}: {list(item)}")


CHECKS = {
    ("response", "status-200"): check_status,
    ("response", "content-type"): check_content_type,
    ("response", "schema"): check_schema,
    ("response", "strict-schema"): check_strict_schema,
    ("response.data", "count"): check_count,
    ("response.data[].b64_json", "image-size"): check_b64_images,
    ("response.data[].url", "image-size"): check_url_images,
    ("response.data[]", "png"): check_png,
    ("response.created", "plausible"): check_created,
    ("response", "x-request-id"): check_request_id,
    ("request", "unknown-field-ignored"): check_count,
    ("response.data[].revised_prompt", "present"): check_revised_prompt,
}


@pytest.mark.rules("response")
def test_response(rule: Rule, contract: Contract) -> None:
    contract.require(rule)
    check = CHECKS[(rule.field, rule.keyword)]
    properties = load_schema(rule.provider, "request")["properties"]

    def example(data: Any) -> None:
        body = draw_valid(data, contract, rule)
        if rule.keyword == "present" and body.get("prompt_extend") is False:
            del body["prompt_extend"]  # its default is on
        if rule.keyword == "unknown-field-ignored":
            name = data.draw(UNKNOWN_FIELD.filter(lambda k: k not in properties), label="unknown field")
            body[name] = data.draw(st.sampled_from([True, 1, "probe", {"a": 1}]), label="its value")
        exchange = contract.target.post(rule.provider, body, paid=True)
        check(contract, rule, body, exchange)

    contract.run(rule, example, paid=True, variant=rule.variant or "any")

"""Valid requests, drawn from the request schema with real input images: what must come back.

One test per response rule. Each first checks its one promise of the answer on every
planned request it applies to (``plan.py``: the count at its bounds, each response format,
sizes at their bounds, the most input images, every optional field given and none; each
sent once and shared by every rule), then draws valid requests (the first one is the
simplest the schema allows), sends them and checks the same promise. Where the answer
keeps its images, their links or base64, its ``created`` and its request id is read from
the provider's ``x-contract`` (see ``providers.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import reject
from hypothesis import strategies as st
from PIL import Image

from .catalogue import Rule, load_schema
from .checks import (
    Body,
    b64_image,
    decode_image,
    expect_json,
    expect_ok,
    plausible_created,
    requested_n,
    requested_size,
    response_validator,
    shown,
)
from .plan import PlanItem
from .providers import api, get_at, has_at, label, with_value, without
from .recorded import check_answers
from .report import Exchange
from .semantics import DATA_URI
from .session import Contract
from .strategies import semantic_problems, valid_requests, validator

UNKNOWN_FIELD = st.from_regex(r"x_contract_probe_[a-z]{1,8}", fullmatch=True)
SEVERAL = 2


def draw_valid(data: Any, contract: Contract, rule: Rule) -> Body:
    where = api(rule.provider)
    body: dict[str, Any] = Body(data.draw(valid_requests(contract.mode(rule.provider)), label="valid request"))
    if rule.variant == "inline":
        body = where.with_format(body, "inline")
    elif rule.variant == "link" and where.requested_format(body) != "link":
        body = where.with_format(body, "link")
    elif rule.variant == "several":
        body = with_value(body, where.count, SEVERAL)
        if not validator(rule.provider, contract.strict).is_valid(body) or semantic_problems(
                body, rule.provider, contract.strict):
            reject()  # this request may not ask for several images (one model's own limit): draw another
    return Body(body)


def items(exchange: Exchange, provider: str) -> list[Any]:
    body = expect_ok(exchange)
    where = api(provider)
    found = get_at(body, where.images, None)
    assert isinstance(found, list), f"the answer has no {label(where.images)} list; {shown(exchange)}"
    return found


def place(provider: str, index: int, key: str | None = None) -> str:
    return label(api(provider).images) + f"[{index}]" + (f".{key}" if key else "")


def image_of(contract: Contract, rule: Rule, item: Any, index: int) -> Image.Image:
    """The image an answer's item carries: its base64 decoded, or its link downloaded."""
    where = api(rule.provider)
    assert isinstance(item, dict), f"{place(rule.provider, index)} is not an object: {item!r}"[:300]
    if where.b64_key and where.b64_key in item:
        return b64_image(item[where.b64_key], place(rule.provider, index, where.b64_key))
    url = item.get(where.url_key)
    what = place(rule.provider, index, where.url_key)
    assert isinstance(url, str) and url, f"{place(rule.provider, index)} has no {where.url_key}: {list(item)}"
    download = contract.target.download(rule.provider, url)
    assert download.error is None, f"{what} could not be fetched: {download.error}"
    assert download.status == 200, f"{what} answered {download.status}, not 200 ({download.response_body[:200]!r})"
    return decode_image(download.response_body, f"the image at {what}")


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
    where = api(rule.provider)
    found = items(exchange, rule.provider)
    n = requested_n(rule.provider, body)
    given = "given" if has_at(body, where.count) else "default"
    assert len(found) == n, f"asked for n={n} ({given}), got {len(found)} items in {label(where.images)}"
    if where.image_count:
        count = get_at(expect_ok(exchange), where.image_count, None)
        assert count == n, f"asked for n={n} ({given}), {label(where.image_count)} is {count!r}"


def check_inline_images(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    where = api(rule.provider)
    found = items(exchange, rule.provider)
    expected = requested_size(rule.provider, body)
    assert found, "no images"
    for index, item in enumerate(found):
        what = place(rule.provider, index, where.b64_key)
        assert isinstance(item, dict) and where.b64_key in item, (
            f"{place(rule.provider, index)} has no {where.b64_key} although base64 output was asked for: "
            f"{list(item) if isinstance(item, dict) else item!r}")
        image = b64_image(item[where.b64_key], what)
        problem = expected.problem(image.size)
        assert problem is None, f"{what} {problem}"


def check_link_images(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    where = api(rule.provider)
    found = items(exchange, rule.provider)
    expected = requested_size(rule.provider, body)
    assert found, "no images"
    for index, item in enumerate(found):
        url = item.get(where.url_key) if isinstance(item, dict) else None
        assert isinstance(url, str) and url, (
            f"{place(rule.provider, index)} has no {where.url_key} although links were asked for: "
            f"{list(item) if isinstance(item, dict) else item!r}")
        image = image_of(contract, rule, item, index)
        problem = expected.problem(image.size)
        assert problem is None, f"the image at {place(rule.provider, index, where.url_key)} {problem}"


def check_png(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    found = items(exchange, rule.provider)
    assert found, "no images"
    for index, item in enumerate(found):
        image = image_of(contract, rule, item, index)
        assert image.format == "PNG", f"{place(rule.provider, index)} is {image.format}, not PNG"


def check_created(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    where = api(rule.provider)
    answer = expect_ok(exchange)
    assert where.created and has_at(answer, where.created), (
        f"the answer has no {label(where.created or ())}; {shown(exchange)}")
    plausible_created(get_at(answer, where.created), contract.options.frozen_time, exchange.recorded_at)


def check_request_id(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    check_status(contract, rule, body, exchange)
    assert exchange.response_headers.get("x-request-id", "").strip(), (
        f"the answer has no x-request-id header (headers: {sorted(exchange.response_headers)})")


def check_body_request_id(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    where = api(rule.provider)
    answer = expect_ok(exchange)
    value = get_at(answer, where.request_id or (), None)
    assert isinstance(value, str) and value.strip(), (
        f"{label(where.request_id or ())} is {value!r}, not a request id; {shown(exchange)}")
    header = exchange.response_headers.get("x-request-id")
    assert header is None or value == header, (
        f"{label(where.request_id or ())} is {value!r}, the x-request-id header {header!r}")


def check_reported_size(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    where = api(rule.provider)
    answer = expect_ok(exchange)
    reported = (get_at(answer, where.width or (), None), get_at(answer, where.height or (), None))
    found = items(exchange, rule.provider)
    assert found, "no images"
    image = image_of(contract, rule, found[0], 0)
    assert reported == image.size, (
        f"{label(where.width or ())} x {label(where.height or ())} is {reported[0]!r} x {reported[1]!r}, "
        f"the images are {image.size[0]}x{image.size[1]}")


def check_revised_prompt(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    where = api(rule.provider)
    for index, item in enumerate(items(exchange, rule.provider)):
        value = item.get(where.revised_prompt_key) if isinstance(item, dict) else None
        assert isinstance(value, str) and value, (
            f"{place(rule.provider, index)} has no {where.revised_prompt_key} although prompt rewriting is "
            f"{'on' if where.prompt_extend and has_at(body, where.prompt_extend) else 'on by default'}: "
            f"{list(item) if isinstance(item, dict) else item!r}")


def check_distinct(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    found = items(exchange, rule.provider)
    n = requested_n(rule.provider, body)
    seen: dict[str, int] = {}
    for index, item in enumerate(found):
        image = image_of(contract, rule, item, index)
        key = hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()
        assert key not in seen, (
            f"{place(rule.provider, index)} is the same image as {place(rule.provider, seen[key])} "
            f"({image.size[0]}x{image.size[1]}): asked for n={n}, got {len(found)} items but not {len(found)} images")
        seen[key] = index


def check_b64_form(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    where = api(rule.provider)
    found = items(exchange, rule.provider)
    assert found, "no images"
    for index, item in enumerate(found):
        what = place(rule.provider, index, where.b64_key)
        value = item.get(where.b64_key) if isinstance(item, dict) else None
        assert isinstance(value, str) and value, f"{what} is not a non-empty string: {value!r}"[:300]
        if rule.get("form") == "plain":
            assert value[:5].lower() != "data:", (
                f"{what} is a data URI ({value[:40]}…), where the document gives plain base64")
        else:
            assert DATA_URI.match(value), (
                f"{what} is bare base64 ({value[:24]}…), where the document gives a data:image/...;base64, URI")


def check_downloads_again(contract: Contract, rule: Rule, body: Body, exchange: Exchange) -> None:
    where = api(rule.provider)
    found = items(exchange, rule.provider)
    assert found, "no images"
    for index, item in enumerate(found):
        first = image_of(contract, rule, item, index)
        what = place(rule.provider, index, where.url_key)
        again = contract.target.download(rule.provider, item[where.url_key], fresh=True)
        lifetime = rule.get("lifetime")
        assert again.error is None, f"{what} could not be fetched a second time: {again.error}"
        assert again.status == 200, (
            f"{what} answered 200 once, then {again.status} when fetched again ({again.response_body[:200]!r}); "
            f"a link should last {lifetime} s")
        image = decode_image(again.response_body, f"the image at {what}, fetched again")
        assert image.size == first.size, (
            f"{what} gave a {first.size[0]}x{first.size[1]} image, then a {image.size[0]}x{image.size[1]} one")


CHECKS: dict[tuple[str, str], Callable[[Contract, Rule, Body, Exchange], None]] = {
    ("status-200", "any"): check_status,
    ("content-type", "any"): check_content_type,
    ("schema", "any"): check_schema,
    ("strict-schema", "any"): check_strict_schema,
    ("count", "any"): check_count,
    ("count-several", "several"): check_count,
    ("distinct", "several"): check_distinct,
    ("image-size", "inline"): check_inline_images,
    ("b64-form", "inline"): check_b64_form,
    ("image-size", "link"): check_link_images,
    ("downloads-again", "link"): check_downloads_again,
    ("png", "inline"): check_png,
    ("png", "link"): check_png,
    ("plausible", "any"): check_created,
    ("x-request-id", "any"): check_request_id,
    ("request-id", "any"): check_body_request_id,
    ("size", "any"): check_reported_size,
    ("unknown-field-ignored", "any"): check_count,
    ("present", "any"): check_revised_prompt,
}


# --------------------------------------------------------------------------- planned requests


def prompt_extended(provider: str, body: dict[str, Any]) -> bool:
    where = api(provider)
    return bool(where.prompt_extend) and get_at(body, where.prompt_extend or (), where.prompt_extend_default) is True


def applies(rule: Rule, body: dict[str, Any]) -> bool:
    """Whether a rule's promise is about the answer to this (planned) request."""
    where = api(rule.provider)
    if rule.keyword in ("unknown-field-ignored",):
        return False  # a request of its own: an unknown field added
    if rule.keyword == "png":
        return True  # every image, inline or linked
    if rule.variant == "inline":
        return where.requested_format(body) == "inline"
    if rule.variant == "link":
        return where.requested_format(body) == "link"
    if rule.variant == "several":
        return requested_n(rule.provider, body) >= 2
    if rule.keyword == "present":
        return prompt_extended(rule.provider, body)
    return True


@dataclass
class PlannedFailure:
    item: PlanItem
    message: str
    exchanges: list[Exchange]


def check_planned(contract: Contract, rule: Rule, check: Callable[[Contract, Rule, Body, Exchange], None]) -> int:
    """Check the rule on every planned request it applies to, in the plan's order (each is
    sent once, by the first rule needing it, while the budget lasts). A planned request
    that is not answered 200 is the ``status-200`` rule's failure alone: the other rules
    pass over it. Returns how many answers were checked; raises naming every planned
    request the rule failed on (the first one's exchanges are the evidence)."""
    target = contract.target
    failures: list[PlannedFailure] = []
    checked = 0
    for item in contract.plan(rule.provider):
        if not applies(rule, item.body):
            continue
        target.begin_example(plan_item=item.name)
        exchange = contract.send_planned(item)
        if exchange is None:
            continue
        record = contract.record_of(item)
        if rule.keyword != "status-200" and (exchange.error is not None or exchange.status != 200):
            record.checks[rule.id] = f"not checked: answered {exchange.status or exchange.error}"
            continue
        try:
            check(contract, rule, item.body, exchange)
        except AssertionError as error:
            record.checks[rule.id] = "fail"
            failures.append(PlannedFailure(item, str(error), list(target.current)))
        else:
            record.checks[rule.id] = "pass"
            checked += 1
    target.begin_example()
    if failures:
        target.current = failures[0].exchanges
        raise AssertionError("\n".join(
            f"planned request {failure.item.name} ({'; '.join(failure.item.covers)}): {failure.message}"
            for failure in failures))
    return checked


@pytest.mark.rules("response")
def test_response(rule: Rule, contract: Contract) -> None:
    contract.require(rule)
    check = CHECKS[(rule.keyword, rule.variant)]
    if contract.cassette:
        check_answers(contract, rule, check, applies)  # offline: the recorded answers (recorded.py)
        return
    properties = load_schema(rule.provider, "request")["properties"]
    where = api(rule.provider)
    planned = check_planned(contract, rule, check)

    def example(data: Any) -> None:
        body = draw_valid(data, contract, rule)
        if rule.keyword == "present" and where.prompt_extend and get_at(body, where.prompt_extend, None) is False:
            body = Body(without(body, where.prompt_extend))  # its default is on
        if rule.keyword == "unknown-field-ignored":
            name = data.draw(UNKNOWN_FIELD.filter(lambda k: k not in properties), label="unknown field")
            body[name] = data.draw(st.sampled_from([True, 1, "probe", {"a": 1}]), label="its value")
        exchange = contract.target.post(rule.provider, body, paid=True)
        check(contract, rule, body, exchange)

    try:
        contract.run(rule, example, paid=True, variant=rule.variant or "any")
    except pytest.skip.Exception as skipped:
        if not planned:
            raise
        # the promise held on the planned requests; the budget ran out before a drawn one
        contract.notes[rule.id] = (f"checked on {planned} planned request(s); no drawn example: "
                                   f"{str(skipped.msg or skipped).split(':')[0]}")

"""Promises only the mock makes: the same request gives byte-identical images, and a
different seed a different image. Real providers promise neither; these are skipped
unless the target is qwen-image-mock."""

from __future__ import annotations

from typing import Any

import pytest

from .catalogue import Rule
from .checks import Body, b64_image, expect_ok, shown
from .providers import api, get_at, label, property_at, with_value
from .session import Contract
from .strategies import request_schema, valid_requests
from .target import b64_payload


def image_bytes(contract: Contract, rule: Rule, body: Body) -> list[bytes]:
    where = api(rule.provider)
    exchange = contract.target.post(rule.provider, body, paid=True, fresh=True)
    answer = expect_ok(exchange)
    found = get_at(answer, where.images, None)
    assert isinstance(found, list), f"the answer has no {label(where.images)} list; {shown(exchange)}"
    out = []
    for index, item in enumerate(found):
        what = f"{label(where.images)}[{index}]"
        if where.b64_key and isinstance(item, dict) and where.b64_key in item:
            b64_image(item[where.b64_key], f"{what}.{where.b64_key}")
            out.append(b64_payload(item[where.b64_key]))
        else:
            url = item.get(where.url_key, "") if isinstance(item, dict) else ""
            download = contract.target.download(rule.provider, url, fresh=True)
            assert download.status == 200, f"{what}.{where.url_key} answered {download.status} ({download.error})"
            out.append(download.response_body)
    assert out, f"no images; {shown(exchange)}"
    return out


def other_seed(provider: str, body: dict[str, Any], effective: int | None) -> int:
    seed = property_at(request_schema(provider, False), api(provider).seed or ())
    high = seed.get("maximum") or max(b.get("maximum", 0) for b in seed.get("anyOf", [{}]))
    current = get_at(body, api(provider).seed or (), None)
    current = current if current is not None else (effective if effective is not None else 0)
    return current + 1 if 0 <= current < high else 0


@pytest.mark.rules("mock")
def test_mock(rule: Rule, contract: Contract) -> None:
    contract.require(rule)
    where = api(rule.provider)
    if rule.keyword == "seed-changes-image" and where.seed is None:
        pytest.skip("the request has no seed (x-contract names none)")

    def example(data: Any) -> None:
        body = Body(data.draw(valid_requests(contract.mode(rule.provider)), label="valid request"))
        first = image_bytes(contract, rule, body)
        if rule.keyword == "same-request-same-bytes":
            again = image_bytes(contract, rule, body)
            assert len(first) == len(again), f"{len(first)} images, then {len(again)} for the same request"
            for index, (a, b) in enumerate(zip(first, again)):
                assert a == b, f"image {index} differs between two identical requests ({len(a)} vs {len(b)} bytes)"
        else:
            header = contract.target.current[0].response_headers.get("x-mock-seed")
            new_seed = other_seed(rule.provider, body, int(header) if header else None)
            changed = Body(with_value(body, where.seed, new_seed))
            second = image_bytes(contract, rule, changed)
            assert first[0] != second[0], (
                f"seed {get_at(body, where.seed, 'absent')} and seed {new_seed} drew the same image")

    contract.run(rule, example, paid=True)

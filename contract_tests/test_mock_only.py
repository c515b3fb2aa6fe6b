"""Promises only the mock makes: the same request gives byte-identical images, and a
different seed a different image. Real providers promise neither; these are skipped
unless the target is qwen-image-mock."""

from __future__ import annotations

from typing import Any

import pytest

from .catalogue import Rule
from .checks import Body, b64_image, expect_ok, shown
from .session import Contract
from .strategies import request_schema, valid_requests
from .target import b64_payload


def image_bytes(contract: Contract, rule: Rule, body: Body) -> list[bytes]:
    exchange = contract.target.post(rule.provider, body, paid=True, fresh=True)
    answer = expect_ok(exchange)
    out = []
    for index, item in enumerate(answer.get("data", [])):
        if "b64_json" in item:
            b64_image(item["b64_json"], f"data[{index}].b64_json")
            out.append(b64_payload(item["b64_json"]))
        else:
            download = contract.target.download(rule.provider, item.get("url", ""))
            assert download.status == 200, f"data[{index}].url answered {download.status} ({download.error})"
            out.append(download.response_body)
    assert out, f"no images; {shown(exchange)}"
    return out


def other_seed(provider: str, body: dict[str, Any], effective: int | None) -> int:
    seed = request_schema(provider, False)["properties"]["seed"]
    high = seed.get("maximum") or max(b.get("maximum", 0) for b in seed.get("anyOf", [{}]))
    current = body.get("seed", effective if effective is not None else 0)
    return current + 1 if 0 <= current < high else 0


@pytest.mark.rules("mock")
def test_mock(rule: Rule, contract: Contract) -> None:
    contract.require(rule)

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
            changed = Body({**body, "seed": other_seed(rule.provider, body, int(header) if header else None)})
            second = image_bytes(contract, rule, changed)
            assert first[0] != second[0], (
                f"seed {body.get('seed', 'absent')} and seed {changed['seed']} drew the same image")

    contract.run(rule, example, paid=True)

"""The contract checked offline, on a cassette: ``--cassette DIR`` (``qwen-image-mock check
--cassette DIR``).

Nothing is sent. The target is the cassette (``CassetteTarget``): every recorded call to an
edit endpoint is an exchange, its request and answer rebuilt from the cassette (images
inlined again, links as recorded, without their query), and a recorded link downloads as
the bytes recorded for it. Each rule then checks the recorded exchanges it is about, with
the same check functions as on a live target:

* a rule about a valid answer (``test_valid_requests.py``): every recorded answer to a
  request the schemas accept (the count and size of its images against the request, its
  schema, ``created`` against the time it was recorded, its base64 form...). A valid
  request refused with 400 is the ``status-200`` rule's failure; one answered with 429,
  5xx, 401 or 403 (the provider's weather, or a key) is checked by no rule about answers;
* a rule about a request the schemas refuse (``test_invalid_requests.py``): every recorded
  request that breaks that rule and no other, whose answer must be the catalogue's error
  in the provider's envelope;
* the protocol rules (``test_protocol.py``): recorded requests without a key or with a
  malformed one, bodies that are not JSON, the request id and offending field of recorded
  errors;
* rules only a cassette checks (``test_recorded.py``): every recorded error answer is in
  the provider's envelope, with a status and code of its catalogue.

A rule no recorded exchange is about is "not run", with the reason. Planned requests
(``plan.py``) are found in the cassette by their canonical form, so a cassette left by a
kit run through ``qwen-image-mock record`` reports its plan as that run did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jsonschema
import pytest

from mockserver.cassettes.canonical import (
    Canonicaliser,
    body_bytes,
    parse_json,
    request_key,
)
from mockserver.cassettes.cassette import Cassette, CassetteError, Recorded, load
from mockserver.cassettes.shapes import Shape
from mockserver.core.schemas import json_path
from mockserver.core.settings import Settings
from mockserver.providers import PROVIDERS as REGISTRY

from .catalogue import Rule
from .checks import (
    Body,
    error_catalogue,
    error_field_label,
    error_validator,
    error_value,
    expect_error,
    expect_json,
    same_field,
    shown,
)
from .mutations import breaks_only
from .providers import KEY_ENV, api
from .report import Exchange
from .strategies import request_schema, semantic_problems, validator
from .target import Budget, Evidence

GIB = 1024**3
# A refusal of a valid request is drift; these are not about the request (limits, outages, keys).
NOT_ABOUT_THE_REQUEST = frozenset({401, 403, 408, 409, 429, 500, 502, 503, 504})


@cache
def _providers() -> dict[str, Any]:
    settings = Settings()
    return {provider_class.name: provider_class(settings) for provider_class in REGISTRY}


_LOADED: dict[str, Cassette] = {}


def load_cassette(directory: str) -> Cassette:
    """The cassette, checked whole (``CassetteError`` naming the file and field); read once
    per run (``forget_cassettes`` starts a run afresh: a cassette may be edited between runs
    in one process)."""
    if directory not in _LOADED:
        providers = _providers()
        _LOADED[directory] = load(directory, paths={name: p.path for name, p in providers.items()},
                                  vary={name: tuple(h.lower() for h in p.vary) for name, p in providers.items()},
                                  max_bytes=64 * GIB, max_exchange_bytes=4 * GIB)
    return _LOADED[directory]


def forget_cassettes() -> None:
    _LOADED.clear()


def cassette_providers(directory: str) -> tuple[str, ...]:
    held = set(load_cassette(directory).providers())
    return tuple(name for name in _providers() if name in held)


@dataclass
class Item:
    """One recorded exchange, ready for the checks."""

    recorded: Recorded
    exchange: Exchange
    body: Any  # the request's JSON value (None if it is not JSON)
    is_json: bool
    plan_item: str | None = None
    _valid: dict[bool, bool] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.recorded.name

    @property
    def provider(self) -> str:
        return self.recorded.provider

    @property
    def status(self) -> int:
        return self.recorded.status

    @property
    def credentials(self) -> str:
        return self.recorded.credentials

    def valid(self, strict: bool) -> bool:
        """Whether the schemas accept the request (its x-size and x-image rules included)."""
        if strict not in self._valid:
            self._valid[strict] = (self.is_json and isinstance(self.body, dict)
                                   and validator(self.provider, strict).is_valid(self.body)
                                   and not semantic_problems(self.body, self.provider, strict))
        return self._valid[strict]

    def label(self) -> str:
        return f"recorded exchange {self.name}" + (f" (planned request {self.plan_item})" if self.plan_item else "")


class CassetteTarget(Evidence):
    """The target of a ``--cassette`` run: the recorded exchanges, nothing sent."""

    live = False

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory
        self.cassette = load_cassette(directory)
        self.base_url = (self.cassette.upstream or "cassette:").rstrip("/")
        self.budget = Budget(None)
        self.links: dict[str, tuple[str | None, str]] = {}
        self.items: dict[str, list[Item]] = {}
        for recorded in self.cassette.exchanges:
            self.items.setdefault(recorded.provider, []).append(self._item(recorded))

    @property
    def description(self) -> str:
        cassette = self.cassette
        return (f"the cassette {self.directory} ({len(cassette.exchanges)} exchanges"
                + (f", recorded from {cassette.upstream}" if cassette.upstream else "") + ")")

    def _item(self, recorded: Recorded) -> Item:
        def link(marker: dict[str, Any]) -> str:
            self.links[marker["link"]] = (marker["$image"], marker.get("unavailable", ""))
            return marker["link"]

        blob = self.cassette.blob
        request = body_bytes(recorded.body, blob, link)
        is_json, value = parse_json(request) if request else (False, None)
        headers = {"Content-Type": "application/json"}
        if recorded.credentials == "bearer":
            headers["Authorization"] = "Bearer <redacted>"
        elif recorded.credentials == "malformed":
            headers["Authorization"] = "<malformed, redacted>"
        headers.update(recorded.headers)
        url = self.base_url + recorded.path + (f"?{recorded.query}" if recorded.query else "")
        exchange = Exchange(recorded.method, url, headers, request, status=recorded.status,
                            response_headers=dict(recorded.response_headers),
                            response_body=body_bytes(recorded.response_body, blob, link),
                            key_env=KEY_ENV[recorded.provider], recorded=recorded.name,
                            recorded_at=recorded.recorded_at)
        return Item(recorded, exchange, value if is_json else None, is_json)

    def match_plan(self, provider: str, items: Any) -> None:
        """Name the recorded exchanges that are planned requests (same canonical form)."""
        shape = Shape.of(_providers()[provider])
        path = _providers()[provider].path
        by_key = {}
        for planned in items:
            canonical = Canonicaliser(shape).request(json.dumps(planned.body).encode())
            by_key[request_key("POST", path, "", "bearer", {}, canonical)] = planned.name
        for item in self.items.get(provider, []):
            item.plan_item = by_key.get(item.recorded.key)
            item.exchange.plan_item = item.plan_item

    # -- what the rules call

    def download(self, provider: str, url: str, *, fresh: bool = False) -> Exchange:
        """A recorded link: the bytes recorded for it (a cassette keeps one download)."""
        exchange = Exchange("GET", url, {}, None, plan_item=self.plan_item)
        self.current.append(exchange)
        if url not in self.links:
            exchange.error = "the cassette holds no download of this link"
            return exchange
        digest, reason = self.links[url]
        if digest is None:
            exchange.error = f"not downloaded when it was recorded: {reason}"
            return exchange
        blob = self.cassette.blobs[digest]
        exchange.status = 200
        exchange.response_headers = {"content-type": blob.media_type}
        exchange.response_body = blob.data
        exchange.cached = True
        return exchange

    def post(self, *args: Any, **kwargs: Any) -> Exchange:
        pytest.skip("a --cassette run sends nothing")

    def get(self, path: str) -> Exchange:
        return Exchange("GET", self.base_url + path, {}, None, error="a --cassette run sends nothing")

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- checking rules


def _checked(contract: Any, rule: Rule, items: list[Item], check: Callable[[Item], None],
             nothing: str) -> None:
    """Run ``check`` on each item; fail naming every exchange it failed on (the first one's
    exchanges are the evidence), skip when there was none to check."""
    target: CassetteTarget = contract.target
    failures: list[tuple[Item, str, list[Exchange]]] = []
    checked = 0
    for item in items:
        target.begin_example(plan_item=item.plan_item)
        target.current = [item.exchange]
        record = contract.record_of_name(rule.provider, item.plan_item) if item.plan_item else None
        try:
            check(item)
        except AssertionError as error:
            failures.append((item, str(error), list(target.current)))
            if record is not None:
                record.checks[rule.id] = "fail"
        except _NotChecked as reason:
            if record is not None:
                record.checks[rule.id] = f"not checked: {reason}"
            continue
        else:
            checked += 1
            if record is not None:
                record.checks[rule.id] = "pass"
    target.begin_example()
    if failures:
        target.current = failures[0][2]
        raise AssertionError("\n".join(f"{item.label()}: {message}" for item, message, _ in failures))
    if not checked:
        pytest.skip(f"no recorded exchange to check: {nothing}")
    contract.notes[rule.id] = f"checked on {checked} recorded exchange(s)"


class _NotChecked(Exception):
    pass


def check_answers(contract: Any, rule: Rule, check: Callable[..., None],
                  applies: Callable[[Rule, dict[str, Any]], bool]) -> None:
    """A rule about a valid answer, on every recorded answer to a valid request it is about."""
    strict = contract.strict
    if rule.keyword == "downloads-again":
        pytest.skip("a cassette keeps one download of each link: whether it downloads again cannot be seen offline")
    items = contract.target.items.get(rule.provider, [])
    chosen = []
    for item in items:
        if item.credentials != "bearer" or not item.valid(strict):
            continue
        if rule.keyword == "unknown-field-ignored":
            known = request_schema(rule.provider, strict).get("properties", {})
            if not any(name not in known for name in item.body):
                continue
        elif not applies(rule, item.body):
            continue
        chosen.append(item)

    def one(item: Item) -> None:
        if rule.keyword == "status-200":
            if item.status in NOT_ABOUT_THE_REQUEST:
                raise _NotChecked(f"answered {item.status}")
            check(contract, rule, Body(item.body), item.exchange)
            return
        if item.status != 200:
            raise _NotChecked(f"answered {item.status}")
        check(contract, rule, Body(item.body), item.exchange)

    _checked(contract, rule, chosen, one, "no recorded answer (200) to a valid request this rule is about")


def check_rejections(contract: Any, rule: Rule, status: int) -> None:
    """A rule about a request the schemas refuse, on every recorded request breaking it alone."""
    chosen = [item for item in contract.target.items.get(rule.provider, [])
              if item.credentials == "bearer" and item.is_json and not item.valid(contract.strict)
              and breaks_only(item.body, rule, contract.strict)]

    def one(item: Item) -> None:
        expect_error(item.exchange, rule.provider, status)

    _checked(contract, rule, chosen, one, "no recorded request breaks this rule alone")


def offending_field(provider: str, strict: bool, body: Any) -> str:
    """The JSON path of the value the schema refuses in a body breaking one value rule."""
    errors = list(jsonschema.Draft202012Validator(request_schema(provider, strict)).iter_errors(body))
    return json_path(list(errors[0].absolute_path)) if errors else ""


def check_protocol(contract: Any, rule: Rule, kinds: dict[str, Callable[..., list[Rule]]]) -> None:
    """A protocol rule on the recorded exchanges it is about; ``kinds``: the kit's way of
    choosing the schema rules whose breaking a rule is about (``rules_of_kind`` and
    ``field_path_candidates`` of ``test_protocol.py``)."""
    provider, strict = rule.provider, contract.strict
    items = contract.target.items.get(provider, [])
    catalogue = error_catalogue(provider)
    keyword = rule.keyword

    def breaking(candidates: list[Rule]) -> list[tuple[Item, Rule]]:
        out = []
        for item in items:
            if item.credentials != "bearer" or not item.is_json or item.valid(strict):
                continue
            found = next((r for r in candidates if breaks_only(item.body, r, strict)), None)
            if found is not None:
                out.append((item, found))
        return out

    if keyword in ("missing-token", "malformed-token"):
        form = "none" if keyword == "missing-token" else "malformed"
        chosen = [item for item in items if item.credentials == form]
        _checked(contract, rule, chosen, lambda item: expect_error(
            item.exchange, provider, catalogue["authentication"]["status"], "authentication"),
            f"no recorded request with {'no' if form == 'none' else 'a malformed'} Authorization header")
    elif keyword == "invalid-key":
        pytest.skip("a cassette never holds a key, so it cannot tell a wrong key from a right one")
    elif keyword == "invalid_json":
        chosen = [item for item in items if item.credentials == "bearer" and not item.is_json]
        _checked(contract, rule, chosen, lambda item: expect_error(
            item.exchange, provider, catalogue["invalid_json"]["status"], "invalid_json"),
            "no recorded request whose body is not JSON")
    elif keyword in ("body_too_large", "not_found", "method_not_allowed"):
        pytest.skip("a cassette holds calls to the edit endpoints, whose bodies the recorder could read: "
                    "not a body over the limit, another path or another method")
    elif keyword == "x-request-id":
        def has_id(item: Item) -> None:
            assert item.exchange.response_headers.get("x-request-id", "").strip(), (
                f"the error answer has no x-request-id header (headers: {sorted(item.exchange.response_headers)})")
        _checked(contract, rule, [item for item in items if item.status >= 400], has_id, "no recorded error answer")
    elif keyword == "request-id":
        where = error_field_label(provider, "request_id")

        def body_id(item: Item) -> None:
            body = expect_error(item.exchange, provider, 400)
            value = error_value(provider, body, "request_id")
            header = item.exchange.response_headers.get("x-request-id")
            assert isinstance(value, str) and value.strip(), f"{where} is {value!r}, not a request id; {shown(item.exchange)}"
            assert header is None or value == header, f"{where} is {value!r}, the request id (x-request-id) is {header!r}"
        chosen = [item for item, _ in breaking(kinds["invalid_parameter"](contract, provider, "invalid_parameter"))]
        _checked(contract, rule, chosen, body_id, "no recorded request breaking one invalid_parameter rule alone")
    elif keyword == "field-path":
        where = error_field_label(provider, "param")
        pairs = breaking(kinds["field-path"](contract, rule))

        def names_field(item: Item) -> None:
            body = expect_error(item.exchange, provider, 400)
            expected = offending_field(provider, strict, item.body)
            param = error_value(provider, body, "param")
            assert same_field(param, expected), f"{where} is {param!r}; the offending field is {expected!r}"
        _checked(contract, rule, [item for item, _ in pairs], names_field,
                 "no recorded request breaking one value rule alone")
    else:
        kind = rule.get("error_kind") or keyword
        candidates = kinds["invalid_parameter"](contract, provider, kind)
        chosen = [item for item, _ in breaking(candidates)]
        _checked(contract, rule, chosen, lambda item: expect_error(
            item.exchange, provider, catalogue[kind]["status"], kind),
            f"no recorded request breaking a rule answered with {kind} alone")


def check_recorded_errors(contract: Any, rule: Rule) -> None:
    """The rules only a cassette checks: every recorded error answer in the envelope, with a
    status and code of the catalogue."""
    provider = rule.provider
    chosen = [item for item in contract.target.items.get(provider, []) if item.status >= 400]

    def envelope(item: Item) -> None:
        body = expect_json(item.exchange)
        problems = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:200]}"
                    for e in error_validator(provider).iter_errors(body)]
        assert not problems, (f"a {item.status} answer is not in the provider's error envelope (error.json): "
                              f"{problems}; {shown(item.exchange)}")

    def catalogued(item: Item) -> None:
        body = expect_json(item.exchange)
        where = api(provider)
        fields = [name for name in ("type", "code") if where.error_field(name) is not None]
        got = {name: error_value(provider, body, name) for name in fields}
        entries = [(kind, entry) for kind, entry in error_catalogue(provider).items()
                   if entry["status"] == item.status and all(entry.get(n) == got[n] for n in fields if n in entry)]
        assert entries, (f"status {item.status} with " + " and ".join(f"{n} {v!r}" for n, v in got.items())
                         + f" is not in the provider's error catalogue (error.json x-errors); {shown(item.exchange)}")

    _checked(contract, rule, chosen, envelope if rule.keyword == "envelope" else catalogued,
             "no recorded error answer")


__all__ = ["CassetteError", "CassetteTarget", "cassette_providers", "check_answers", "check_protocol",
           "check_recorded_errors", "check_rejections", "forget_cassettes", "load_cassette"]

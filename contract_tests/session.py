"""One contract run: the options, the target, the report, and how each rule's Hypothesis
test is configured."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

from .catalogue import KEY_ENV, PROVIDERS, Rule
from .plan import Plan, PlanItem, build_plan
from .recorded import CassetteTarget, cassette_providers
from .report import Exchange, Report, redact
from .strategies import Mode
from .target import Target, is_loopback

IN_PROCESS_KEY = "contract-test-key"
PROFILE_ENV = "CONTRACT_HYPOTHESIS_PROFILE"  # profiles: registered in conftest.py

# Rules whose bad value does not vary: a few examples (different valid bodies around it) do.
FIXED_VIOLATIONS = {"x-image.maxBytes", "x-image.maxPixels", "x-image.formats"}


@dataclass
class Options:
    base_url: str | None = None
    providers: tuple[str, ...] = PROVIDERS
    api_key_env: str | None = None
    max_requests: int = 20
    rps: float = 2.0
    report: str | None = None
    record: str | None = None
    strict: bool = False
    frozen_time: int | None = None
    examples: int | None = None
    asgi_app: str | None = None
    target_kind: str = "auto"
    max_body_bytes: int = 20 * 1024 * 1024
    timeout: float = 120.0
    shrink: bool = False
    plan: bool = True  # send the planned requests first (--no-plan: drawn examples only)
    cassette: str | None = None  # check the exchanges of this cassette, offline (recorded.py)

    @classmethod
    def from_config(cls, config: pytest.Config) -> Options:
        get = config.getoption
        cassette = get("contract_cassette")
        providers = tuple(get("contract_provider") or ())
        if not providers:
            # a cassette is checked for the providers it holds
            providers = cassette_providers(cassette) if cassette else PROVIDERS
        if "all" in providers:
            providers = PROVIDERS
        return cls(
            base_url=get("contract_base_url"), providers=providers, api_key_env=get("contract_api_key_env"),
            max_requests=get("contract_max_requests"), rps=get("contract_rps"), report=get("contract_report"),
            record=get("contract_record"), strict=get("contract_strict"), frozen_time=get("contract_frozen_time"),
            examples=get("contract_examples"), asgi_app=get("contract_asgi_app"),
            target_kind=get("contract_target_kind"), max_body_bytes=get("contract_max_body_bytes"),
            timeout=get("contract_timeout"), shrink=get("contract_shrink"), plan=not get("contract_no_plan"),
            cassette=cassette,
        )


@dataclass
class PlanRecord:
    """What became of one planned request: sent (its status and request id) or not, and
    the outcome of each rule that checked its answer."""

    item: PlanItem
    sent: bool = False
    status: int | None = None
    request_id: str | None = None
    reason: str = ""  # why it was not sent
    checks: dict[str, str] = field(default_factory=dict)  # rule id -> pass | fail | not checked: why

    def as_dict(self, order: int) -> dict[str, Any]:
        out: dict[str, Any] = {"order": order, "name": self.item.name, "kind": self.item.kind,
                               "case": self.item.case, "covers": list(self.item.covers),
                               "body": redact(dict(self.item.body)), "sent": self.sent}
        if self.sent:
            out.update(status=self.status, request_id=self.request_id, checks=dict(self.checks))
        else:
            out["reason"] = self.reason or "not needed: no rule that checks a valid answer ran (selection, or skipped)"
        return out


@dataclass
class Contract:
    options: Options
    report: Report
    _target: Target | None = None
    mock: bool = True
    keys: dict[str, str | None] = field(default_factory=dict)
    key_from_env: dict[str, bool] = field(default_factory=dict)
    key_envs: dict[str, str] = field(default_factory=dict)
    planned: dict[tuple[str, str], PlanRecord] = field(default_factory=dict)  # (provider, item name)
    notes: dict[str, str] = field(default_factory=dict)  # rule id -> a note for the report

    def __post_init__(self) -> None:
        o = self.options
        for provider in PROVIDERS:
            env = o.api_key_env or KEY_ENV[provider]
            self.key_envs[provider] = env
            if o.base_url is None:
                self.keys[provider], self.key_from_env[provider] = IN_PROCESS_KEY, False
            else:
                value = os.environ.get(env) or None
                self.key_from_env[provider] = value is not None
                # the mock accepts any token; a real provider gets nothing without a key
                self.keys[provider] = value or (IN_PROCESS_KEY if is_loopback(o.base_url) else None)

    @property
    def live(self) -> bool:
        return self.options.base_url is not None

    @property
    def strict(self) -> bool:
        return self.options.strict

    @property
    def cassette(self) -> bool:
        return self.options.cassette is not None

    @property
    def target(self) -> Target:
        if self._target is None and self.options.cassette is not None:
            self._target = CassetteTarget(self.options.cassette)  # type: ignore[assignment]
            self.mock = self.options.target_kind == "mock"
            self.report.target["mock"] = self.mock
            for provider in self.options.providers:
                self._target.match_plan(provider, self.plan(provider))  # type: ignore[attr-defined]
                for item in self._target.items.get(provider, []):  # type: ignore[attr-defined]
                    record = self.record_of_name(provider, item.plan_item) if item.plan_item else None
                    if record is not None:
                        record.sent, record.status = True, item.status
                        record.request_id = item.exchange.request_id
        if self._target is None:
            o = self.options
            app = None if self.live else self.build_app()
            self._target = Target(base_url=o.base_url, keys=self.keys, key_envs=self.key_envs if self.live else {},
                                  max_requests=o.max_requests, rps=o.rps, timeout=o.timeout,
                                  record_dir=o.record, app=app)
            self.mock = self.detect_mock()
            self.report.target["mock"] = self.mock
            self.report.budget = self._target.budget.as_dict()
        return self._target

    def build_app(self) -> Any:
        from mockserver import Settings, create_app

        settings_ = Settings(api_keys=frozenset({IN_PROCESS_KEY}), strict=self.options.strict,
                             frozen_time=self.options.frozen_time, max_body_bytes=self.options.max_body_bytes)
        if not self.options.asgi_app:
            return create_app(settings_)
        module_name, _, attr = self.options.asgi_app.partition(":")
        factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attr or "create_app")
        return factory(settings_) if inspect.signature(factory).parameters else factory()

    def detect_mock(self) -> bool:
        kind = self.options.target_kind
        if kind != "auto":
            return kind == "mock"
        if not self.live:
            return True
        if not is_loopback(self.options.base_url or ""):
            return False  # never probe a remote host for something it does not document
        answer = self._target.get("/openapi.json") if self._target else None
        try:
            return answer is not None and answer.status == 200 and answer.json()["info"]["title"] == "qwen-image-mock"
        except (ValueError, KeyError, TypeError):
            return False

    def close(self) -> None:
        if self._target is not None:
            self.report.budget = self._target.budget.as_dict()
            self._target.close()

    # -- what may run

    def require(self, rule: Rule) -> None:
        """Skip (as "not run", with the reason) what this target or these options cannot check."""
        o = self.options
        if rule.strict_only and not o.strict:
            pytest.skip("strict-only rule: pass --strict-mode (against a server in strict mode) to check it")
        if rule.kind == "response" and rule.keyword == "strict-schema" and not o.strict:
            pytest.skip("strict response checks: pass --strict-mode to check them")
        if rule.kind == "response" and rule.keyword == "unknown-field-ignored" and o.strict:
            pytest.skip("with --strict-mode unknown fields must be refused: checked by the additionalProperties(strict) rules")
        if self.live and self.keys.get(rule.provider) is None:
            pytest.skip(f"no API key for a real provider: set ${self.key_envs[rule.provider]} "
                        "(or name another variable with --api-key-env)")
        target = self.target  # starts the in-process mock, or detects what a live target is
        if rule.kind == "mock" and self.cassette:
            pytest.skip("a promise of the mock only, about answers to requests sent twice: not checkable on a cassette")
        if rule.kind == "mock" and not self.mock:
            pytest.skip("a promise of the mock only (real providers do not make it); the target is not qwen-image-mock")
        if rule.keyword == "invalid-key" and self.live and not self.key_from_env.get(rule.provider):
            pytest.skip(f"needs a target that checks keys and the real key in ${self.key_envs[rule.provider]}; "
                        "without one the mock accepts any token")
        target.begin_test(rule.id)

    # -- the plan

    def plan(self, provider: str) -> Plan:
        """The planned requests of a provider (none with --no-plan)."""
        if not self.options.plan:
            return Plan(provider, (), ())
        return build_plan(provider, self.strict)

    def record_of(self, item: PlanItem) -> PlanRecord:
        key = (item.provider, item.name)
        if key not in self.planned:
            self.planned[key] = PlanRecord(item)
        return self.planned[key]

    def record_of_name(self, provider: str, name: str) -> PlanRecord | None:
        item = next((item for item in self.plan(provider) if item.name == name), None)
        return None if item is None else self.record_of(item)

    def send_planned(self, item: PlanItem) -> Exchange | None:
        """The answer to a planned request: sent the first time a rule needs it, replayed
        from the cache after that; None when it was not sent (the budget is spent)."""
        record = self.record_of(item)
        exchange = self.target.post(item.provider, item.body, paid=True, reuse=True, skip_when_spent=False)
        if exchange is None:
            if not record.sent:
                record.reason = (f"paid-request budget spent (--max-requests {self.options.max_requests}) "
                                 "before its turn in the plan's order")
            return None
        if not record.sent:
            record.sent, record.status, record.request_id = True, exchange.status, exchange.request_id
        return exchange

    def plan_report(self) -> dict[str, dict[str, Any]]:
        """Per provider: each planned request in order, sent or not (and why), with the
        outcome of each rule that checked it; and what the plan leaves out."""
        if not self.options.plan:
            return {}
        out = {}
        for provider in self.options.providers:
            plan = self.plan(provider)
            items = [self.planned.get((provider, item.name)) or PlanRecord(item) for item in plan.items]
            if self.live and self.keys.get(provider) is None:
                for record in items:
                    record.reason = record.reason or f"no API key (${self.key_envs[provider]})"
            if self.cassette:
                for record in items:
                    record.reason = record.reason or "not in the cassette (record a kit run through the proxy)"
            out[provider] = {"items": [record.as_dict(index) for index, record in enumerate(items, 1)],
                             "left_out": list(plan.left_out)}
        return out

    def mode(self, provider: str, rule: Rule | None = None) -> Mode:
        """How to draw valid requests; for a conditional rule, requests meeting its condition."""
        branch = rule.condition.branch if rule is not None and rule.condition is not None else ()
        return Mode(provider, strict=self.options.strict, mock=self.mock, branch=branch)

    # -- Hypothesis

    def examples(self, rule: Rule, paid: bool) -> int:
        if self.options.examples is not None:
            return self.options.examples
        if self.live:
            return 1 if paid else 2
        base = settings.get_profile(os.environ.get(PROFILE_ENV, "contract-ci")).max_examples
        if rule.base_keyword in FIXED_VIOLATIONS:
            return min(base, 3)
        return base if paid else max(2, base // 2)

    def run(self, rule: Rule, test: Callable[[Any], None], *, paid: bool, variant: str | None = None,
            examples: int | None = None) -> None:
        """Run ``test(data)`` under Hypothesis with this run's settings (``examples``: this
        many examples instead of the run's count)."""
        profile = settings.get_profile(os.environ.get(PROFILE_ENV, "contract-ci"))
        options: dict[str, Any] = {"max_examples": examples or self.examples(rule, paid)}
        if self.live:
            # every example costs a request: no shrinking (it would send many), no replay database
            options.update(phases=[Phase.explicit, Phase.generate], database=None)
        elif not self.options.shrink:
            # Hypothesis tries the simplest request first, so a broken rule usually fails on a
            # small example already; shrinking it further costs seconds per failing rule.
            options.update(phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target])
        target = self.target

        def one_example(data: Any) -> None:
            target.begin_example()
            test(data)

        wrapped = settings(profile, **options)(given(st.data())(one_example))
        if profile.derandomize or self.live:
            # Every rule runs the same test function, which a derandomised run would give the
            # same examples: each rule gets its own seed (Hypothesis's public @seed), derived
            # from its id. On a live target, rules that need the same kind of valid request
            # share the seed, so they draw the same request and its answer is paid for once.
            wrapped = seed(example_seed(f"{rule.provider}:{variant}" if (self.live and variant) else rule.id))(wrapped)
        wrapped()


def example_seed(name: str) -> int:
    """A stable seed for a name (the same in every process: not ``hash()``)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")

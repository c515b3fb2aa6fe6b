"""Scenarios, for testing retry logic: stateful rules such as "fail the next 2 calls with
rate_limit, then succeed" or "fail every 3rd call", scoped to one API key or one
``X-Mock-Session`` value so tests running side by side do not see each other's; and chaos,
a seeded failure rate for soak tests.

A call goes to the first scenario (in the order they were added) that matches it and is not
used up; that scenario counts the call and decides whether it fires. So scenarios added one
after the other play one after the other: ``rate_limit`` twice, then ``server_error`` once,
then success.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .faults import (
    FAULT_NAMES,
    MAX_LATENCY_MS,
    Fault,
    PreferError,
    bounded,
    fault_named,
)
from .journal import redact_token

MAX_SCENARIOS = 1000
FAULT_OPTIONS = ("retry_after_ms", "pause_ms")
SPEC_KEYS = frozenset(
    {"fault", *FAULT_OPTIONS, "latency_ms", "api_key", "session", "provider", "after", "every", "times", "rate",
     "seed"}
)


class ScenarioError(ValueError):
    pass


@dataclass(eq=False)
class Scenario:
    id: str
    fault: Fault | None
    latency_ms: int | None = None
    api_key: str | None = None
    session: str | None = None
    provider: str | None = None
    after: int = 0  # calls let through before it starts firing
    every: int = 1  # fire on every n-th call after those
    times: int | None = None  # fire this many times, then it is used up; None: never used up
    rate: float | None = None  # fire on an eligible call with this probability...
    seed: int = 0  # ...drawn from a generator with this seed, so runs repeat
    calls: int = 0
    fired: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @property
    def used_up(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, provider: str, api_key: str | None, session: str | None) -> bool:
        return (
            (self.provider is None or self.provider == provider)
            and (self.api_key is None or self.api_key == api_key)
            and (self.session is None or self.session == session)
        )

    def take(self) -> bool:
        """Count a call; whether the scenario fires on it."""
        self.calls += 1
        position = self.calls - self.after
        if position <= 0 or position % self.every:
            return False
        if self.rate is not None and self._random.random() >= self.rate:
            return False
        self.fired += 1
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **(self.fault.describe() if self.fault else {"fault": None}),
            "latency_ms": self.latency_ms,
            "api_key": None if self.api_key is None else redact_token(self.api_key),
            "session": self.session,
            "provider": self.provider,
            "after": self.after,
            "every": self.every,
            "times": self.times,
            "rate": self.rate,
            "seed": self.seed,
            "calls": self.calls,
            "fired": self.fired,
            "used_up": self.used_up,
        }


def _count(spec: dict[str, Any], name: str, default: int | None, minimum: int) -> int | None:
    value = spec.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def _text(spec: dict[str, Any], name: str) -> str | None:
    value = spec.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ScenarioError(f"{name} must be a non-empty string, not {value!r}")
    return value


class ScenarioBook:
    def __init__(self, providers: Iterable[str]) -> None:
        self.providers = frozenset(providers)
        self._scenarios: list[Scenario] = []
        self._added = 0

    def __bool__(self) -> bool:
        return bool(self._scenarios)

    @property
    def room(self) -> int:
        """How many more scenarios may be added."""
        return MAX_SCENARIOS - len(self._scenarios)

    def add(self, *specs: object) -> list[Scenario]:
        """Add scenarios from their JSON specs: all of them, or none if one is invalid."""
        parsed = [self.parse(spec) for spec in specs]
        if len(self._scenarios) + len(parsed) > MAX_SCENARIOS:
            raise ScenarioError(f"the mock holds at most {MAX_SCENARIOS} scenarios; delete some first")
        self._scenarios += parsed
        return parsed

    def parse(self, spec: object) -> Scenario:
        if not isinstance(spec, dict):
            raise ScenarioError(f"a scenario is a JSON object, not {type(spec).__name__}")
        unknown = sorted(set(spec) - SPEC_KEYS)
        if unknown:
            raise ScenarioError(f"unknown scenario field(s) {', '.join(unknown)}; known: {', '.join(sorted(SPEC_KEYS))}")
        provider = _text(spec, "provider")
        if provider is not None and provider not in self.providers:
            raise ScenarioError(f"provider must be one of {', '.join(sorted(self.providers))}, not {provider!r}")
        try:
            fault = None
            if spec.get("fault") is not None:
                fault = fault_named(spec["fault"], *(spec.get(option) for option in FAULT_OPTIONS))
            elif any(spec.get(option) is not None for option in FAULT_OPTIONS):
                raise ScenarioError(f"{' and '.join(FAULT_OPTIONS)} go with a fault")
            latency = spec.get("latency_ms")
            latency = None if latency is None else bounded("latency_ms", latency, MAX_LATENCY_MS)
        except PreferError as error:
            raise ScenarioError(str(error)) from None
        if fault is None and latency is None:
            raise ScenarioError("a scenario needs a fault, a latency_ms, or both")
        rate = spec.get("rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
            raise ScenarioError(f"rate must be a number between 0 and 1, not {rate!r}")
        seed = spec.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ScenarioError(f"seed must be an integer, not {seed!r}")
        self._added += 1
        return Scenario(
            id=f"s{self._added}",
            fault=fault,
            latency_ms=latency,
            api_key=_text(spec, "api_key"),
            session=_text(spec, "session"),
            provider=provider,
            after=_count(spec, "after", 0, 0) or 0,
            every=_count(spec, "every", 1, 1) or 1,
            times=_count(spec, "times", None, 1),
            rate=None if rate is None else float(rate),
            seed=seed,
        )

    def select(self, session: str | None = None, api_key: str | None = None) -> list[Scenario]:
        return [
            s for s in self._scenarios
            if (session is None or s.session == session) and (api_key is None or s.api_key == api_key)
        ]

    def remove(self, scenario_id: str) -> bool:
        before = len(self._scenarios)
        self._scenarios = [s for s in self._scenarios if s.id != scenario_id]
        return len(self._scenarios) < before

    def clear(self, session: str | None = None, api_key: str | None = None) -> int:
        doomed = {id(s) for s in self.select(session, api_key)}
        self._scenarios = [s for s in self._scenarios if id(s) not in doomed]
        return len(doomed)

    def decide(self, provider: str, api_key: str | None, session: str | None) -> Scenario | None:
        """The scenario that fires on this call, if one does."""
        for scenario in self._scenarios:
            if not scenario.used_up and scenario.matches(provider, api_key, session):
                return scenario if scenario.take() else None
        return None


class Chaos:
    """A failure rate with a seed: the sequence of calls that fail, and how, repeats run to
    run (in each worker, in the order calls arrive)."""

    def __init__(self, rate: float, seed: int, faults: Iterable[str]) -> None:
        self.rate = rate
        self.faults = tuple(faults)
        unknown = sorted(set(self.faults) - FAULT_NAMES)
        if unknown:
            raise ValueError(f"chaos_faults: unknown fault(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(FAULT_NAMES))}")
        self._random = random.Random(seed)

    def __bool__(self) -> bool:
        return self.rate > 0 and bool(self.faults)

    def decide(self) -> Fault | None:
        if self._random.random() >= self.rate:
            return None
        return Fault(self._random.choice(self.faults))

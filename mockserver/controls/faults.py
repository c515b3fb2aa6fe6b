"""Faults and latency a client asks for, one request at a time, with the ``Prefer`` header
(Prism's convention): ``Prefer: code=429``, ``Prefer: fault=reset``, ``Prefer: latency=250``.

A fault is named (``rate_limit``, ``reset``...). Scenarios and chaos inject the same named
faults. An error fault answers in the provider's own envelope: the provider's error
catalogue (``schemas/<provider>/error.json``) turns the neutral kind into status, ``type``
and ``code``. A network fault misbehaves on the connection instead (see ``network.py``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from ..core.errors import ApiError
from ..core.formats import whole_number
from ..core.settings import MAX_LATENCY_MS, MAX_RETRY_AFTER_MS

NETWORK_FAULTS = frozenset({"reset", "truncated", "slow_body"})

# Named error fault -> the neutral error kind of the providers' catalogues.
ERROR_FAULTS: dict[str, str] = {
    "moderation": "moderation",
    "invalid_key": "authentication",
    "forbidden": "forbidden",
    "request_timeout": "timeout",
    "rate_limit": "rate_limit",
    "server_error": "internal_error",
    "overloaded": "overloaded",
    "gateway_timeout": "gateway_timeout",
}

# ``timeout`` is the timeout each provider is known for: its error schema's ``x-timeout``
# names the kind (powertokens' upstream documents RequestTimeOut, 408; modelverse's gateway
# cuts off a long generation with gateway_timeout_error, 504). ``code=408`` and ``code=504``
# (or ``request_timeout`` / ``gateway_timeout``) pick one explicitly.
FAULT_NAMES = frozenset(ERROR_FAULTS) | {"timeout"} | NETWORK_FAULTS

# ``Prefer: code=<status>`` is shorthand for the named fault that answers with that status.
CODE_FAULTS: dict[int, str] = {
    400: "moderation",
    401: "invalid_key",
    403: "forbidden",
    408: "request_timeout",
    429: "rate_limit",
    500: "server_error",
    503: "overloaded",
    504: "gateway_timeout",
}
SUCCESS_CODE = 200

# Faults that tell the client when to come back (RFC 9110 allows Retry-After on 429 and 503).
RETRY_AFTER_FAULTS = frozenset({"rate_limit", "overloaded"})

MESSAGES = {
    "moderation": "Input data may contain inappropriate content.",
    "authentication": "Invalid API key.",
    "forbidden": "Access denied.",
    "timeout": "Request timed out, please try again later.",
    "rate_limit": "Requests rate limit exceeded, please try again later.",
    "internal_error": "An internal error has occurred, please try again later.",
    "overloaded": "The service is temporarily overloaded, please try again later.",
    "gateway_timeout": "The model did not answer in time, please try again later.",
}

# Bounds on what a request may ask for, so no request can hold the server for long (the
# latency and retry-after bounds are the settings' too).
MAX_PAUSE_MS = 60_000
DEFAULT_PAUSE_MS = 100


class PreferError(ValueError):
    """A ``Prefer`` header (or a scenario) asking for something the mock does not do."""


@dataclass(frozen=True)
class Fault:
    name: str
    retry_after_ms: int | None = None  # rate_limit, overloaded: default from the settings
    pause_ms: int | None = None  # slow_body: pause before each piece of the body

    @property
    def is_network(self) -> bool:
        return self.name in NETWORK_FAULTS

    def error_kind(self, timeout_kind: str) -> str:
        """The neutral error kind this fault answers with; ``timeout_kind`` is the provider's
        own timeout."""
        return timeout_kind if self.name == "timeout" else ERROR_FAULTS[self.name]

    def to_error(self, timeout_kind: str, source: str, default_retry_after_ms: int) -> ApiError:
        kind = self.error_kind(timeout_kind)
        headers = {}
        if self.name in RETRY_AFTER_FAULTS:
            delay = self.retry_after_ms if self.retry_after_ms is not None else default_retry_after_ms
            # Retry-After counts whole seconds; retry-after-ms (read first by the OpenAI SDK) is exact.
            headers = {"retry-after": str(math.ceil(delay / 1000)), "retry-after-ms": str(delay)}
        message = f"{MESSAGES[kind]} (fault {self.name} injected by the mock, from {source})"
        return ApiError(kind, message, headers=headers)

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"fault": self.name}
        if self.retry_after_ms is not None:
            described["retry_after_ms"] = self.retry_after_ms
        if self.pause_ms is not None:
            described["pause_ms"] = self.pause_ms
        return described


def fault_named(name: object, retry_after_ms: object = None, pause_ms: object = None) -> Fault:
    """A fault from its name and options, as a scenario or the settings give them."""
    if name not in FAULT_NAMES:
        raise PreferError(f"{name!r} is not a fault the mock knows; use one of {', '.join(sorted(FAULT_NAMES))}")
    return Fault(
        str(name),
        retry_after_ms=None if retry_after_ms is None else bounded("retry_after_ms", retry_after_ms, MAX_RETRY_AFTER_MS),
        pause_ms=None if pause_ms is None else bounded("pause_ms", pause_ms, MAX_PAUSE_MS),
    )


def bounded(name: str, value: object, maximum: int) -> int:
    """A whole number of milliseconds in 0..maximum, from a header's text or a JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PreferError(f"{name} must be a whole number of milliseconds, not {value!r}")
    text = str(value).strip() if isinstance(value, str) or abs(value) < 10**12 else "too large"
    number = whole_number(text, maximum)
    if number is None:
        raise PreferError(f"{name} must be a whole number of milliseconds between 0 and {maximum}, not {text[:20]!r}")
    return number


@dataclass(frozen=True)
class Preferences:
    """What one request's ``Prefer`` header asks of the mock."""

    fault: Fault | None = None
    succeed: bool = False  # code=200: answer normally, whatever scenarios or chaos would do
    latency_ms: int | None = None
    applied: tuple[str, ...] = ()  # for the Preference-Applied header

    @property
    def applied_header(self) -> str | None:
        return ", ".join(self.applied) or None


KNOWN = frozenset({"code", "fault", "latency", "retry_after_ms", "pause_ms"})


def preference_tokens(values: Iterable[str]) -> dict[str, str]:
    """``name=value`` pairs of Prefer headers; RFC 7240 separates preferences with commas and
    their parameters with semicolons, and people write either, so both separate here. The
    first instance of a name counts (RFC 7240); names the mock does not know are ignored."""
    tokens: dict[str, str] = {}
    for value in values:
        for item in value.replace(";", ",").split(","):
            name, _, text = item.partition("=")
            name = name.strip().lower().replace("-", "_")
            if name in KNOWN and name not in tokens:
                tokens[name] = text.strip().strip('"')
    return tokens


def parse_prefer(values: Iterable[str]) -> Preferences:
    tokens = preference_tokens(values)
    if not tokens:
        return Preferences()
    applied: list[str] = []
    if "code" in tokens and "fault" in tokens:
        raise PreferError("Prefer: give code= or fault=, not both")
    fault_name: str | None = None
    succeed = False
    if "code" in tokens:
        code = tokens["code"]
        status = whole_number(code)
        supported = [SUCCESS_CODE, *CODE_FAULTS]
        if status not in supported:
            raise PreferError(
                f"Prefer: code={code[:20]} is not supported; use one of {', '.join(map(str, supported))}"
            )
        succeed = status == SUCCESS_CODE
        fault_name = CODE_FAULTS.get(status)
        applied.append(f"code={status}")
    elif "fault" in tokens:
        fault_name = tokens["fault"]
        if fault_name not in FAULT_NAMES:
            raise PreferError(
                f"Prefer: fault={fault_name[:40]} is not a fault the mock knows; "
                f"use one of {', '.join(sorted(FAULT_NAMES))}"
            )
        applied.append(f"fault={fault_name}")
    fault = None
    if fault_name is not None:
        try:
            fault = fault_named(fault_name, tokens.get("retry_after_ms"), tokens.get("pause_ms"))
        except PreferError as error:
            raise PreferError(f"Prefer: {error}") from None
        if fault.retry_after_ms is not None and fault.name in RETRY_AFTER_FAULTS:
            applied.append(f"retry-after-ms={fault.retry_after_ms}")
        if fault.pause_ms is not None and fault.name == "slow_body":
            applied.append(f"pause-ms={fault.pause_ms}")
    latency = None
    if "latency" in tokens:
        try:
            latency = bounded("latency", tokens["latency"], MAX_LATENCY_MS)
        except PreferError as error:
            raise PreferError(f"Prefer: {error}") from None
        applied.append(f"latency={latency}")
    return Preferences(fault=fault, succeed=succeed, latency_ms=latency, applied=tuple(applied))


class Latency:
    """The mock's own answer time: fixed, or drawn from a range by a seeded generator, so a
    run's sequence of delays is the same every time."""

    def __init__(self, low_ms: int, high_ms: int, seed: int) -> None:
        self.low_ms, self.high_ms = low_ms, high_ms
        self._random = random.Random(seed)

    def __bool__(self) -> bool:
        return self.high_ms > 0

    def next_ms(self) -> int:
        if self.low_ms == self.high_ms:
            return self.low_ms
        return self._random.randint(self.low_ms, self.high_ms)

"""The one exception every layer raises to answer with an error.

Errors are named by provider-neutral kinds (``invalid_parameter``, ``authentication``,
``body_too_large``...); each provider's ``error.json`` maps a kind to its own status,
``type`` and ``code``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ApiError(Exception):
    kind: str
    message: str
    param: str | None = None
    violations: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    # The schema rule that rejected the request and where that rule comes from (``doc``,
    # ``upstream`` or ``assumption``), when a schema rule did: the ``x-mock-rule`` headers
    # say so, and the dashboard shows it.
    rule: str | None = None
    source: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def invalid_parameter(param: str, message: str) -> ApiError:
    text = f"{param}: {message}"
    return ApiError("invalid_parameter", text, param=param, violations=[text])

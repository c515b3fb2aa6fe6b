"""The TOML config file: the settings the flags set, kept in a file beside the tests.

    api_keys = ["sk-test-1", "sk-test-2"]
    strict = true
    latency = "100-400"
    chaos_rate = 0.05
    journal_cap = 200

Keys are the settings' names (``api_keys`` or ``api-keys``). When the file has a
``[tool.qwen-image-mock]`` table, that table is read instead, so the settings can live in
``pyproject.toml`` (a ``pyproject.toml`` without the table sets nothing). Flags and
``QWEN_MOCK_*`` variables override the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from typing import Any

SERVE_OPTIONS = frozenset({"host", "port", "log_level"})


def _as_text(value: Any) -> str:
    """The file's value as the text a flag would carry, for the setting's own parser."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


# Tables of a pyproject.toml: a file holding one is a project file, whose other tables are
# not the mock's.
PROJECT_TABLES = frozenset({"project", "build-system", "tool"})


def settings_table(data: dict[str, Any]) -> dict[str, Any]:
    """The ``[tool.qwen-image-mock]`` table, or the whole file if it is not a project file; a
    project file without the table sets nothing."""
    tool = data.get("tool")
    if isinstance(tool, dict) and isinstance(tool.get("qwen-image-mock"), dict):
        return tool["qwen-image-mock"]
    return {} if PROJECT_TABLES & set(data) else data


def read_config(path: str, specs: Iterable[Any]) -> dict[str, Any]:
    """The settings a config file sets, parsed; ``ValueError`` naming the file and the key."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ValueError(f"config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path}: not valid TOML: {error}") from None
    table = settings_table(data)
    by_name = {spec.name: spec for spec in specs if spec.name != "config"}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        spec = by_name.get(name)
        if spec is None:
            hint = " (host, port and log level are command-line options)" if name in SERVE_OPTIONS else ""
            raise ValueError(f"config file {path}: {key!r} is not a setting{hint}; "
                             f"settings: {', '.join(sorted(by_name))}")
        if spec.is_flag != isinstance(value, bool):
            expected = "true or false" if spec.is_flag else "a number, a string or a list, not a boolean"
            raise ValueError(f"config file {path}: {key} must be {expected}")
        try:
            parsed = spec.parse(_as_text(value))
        except ValueError as error:
            raise ValueError(f"config file {path}: {key}: {error}") from None
        choices = spec.choices
        if choices and parsed not in choices:
            raise ValueError(f"config file {path}: {key} must be one of {', '.join(choices)}, not {parsed!r}")
        values[name] = parsed
    return values

"""Contract tests for the hosted Qwen image-editing APIs the mock serves (every provider of
its registry, ``mockserver.providers.PROVIDERS``).

A pytest + Hypothesis suite generated from the JSON Schemas in ``schemas/``. It checks the
in-process mock by default, or any live server given ``--base-url`` (the mock on a port,
or a real provider), and writes a conformance report. See ``README.md`` beside this file,
or run ``qwen-image-mock check --help``.
"""

from pathlib import Path

SUITE_DIR = Path(__file__).resolve().parent

__all__ = ["SUITE_DIR"]

"""``qwen-image-mock check``: run the contract suite against a server and print the report.

    qwen-image-mock check                                   # the mock itself, in process
    qwen-image-mock check --base-url https://api.example --provider modelverse --report out/modelverse
    qwen-image-mock check --cassette tests/cassettes/checkout    # recorded exchanges, offline

The suite is the ``contract_tests`` folder (shipped in the wheel as ``mockserver/contract_tests``);
this command is a thin layer over ``pytest.main`` with the suite's own options, so
anything after ``--`` goes to pytest unchanged (``-- -k n::maximum -x``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ..providers import PROVIDERS


def suite_dir() -> Path:
    """Where the contract suite is: shipped inside the package (``mockserver/contract_tests``,
    so that installing the mock adds no generic top-level package), or the checkout's
    top-level folder."""
    packaged = Path(__file__).resolve().parents[1] / "contract_tests"
    if (packaged / "conftest.py").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "contract_tests"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    check = subparsers.add_parser(
        "check", help="run the contract suite against the mock or a real provider and print the report",
        description="Check a server against the contract in schemas/: valid requests must be answered as "
                    "documented, invalid ones refused in the provider's error envelope. Without --base-url "
                    "the mock itself is checked, in process; nothing leaves 127.0.0.1 then.")
    check.add_argument("--base-url", metavar="URL", help="the server to check (default: the mock, in process)")
    check.add_argument("--cassette", metavar="DIR",
                       help="check the exchanges recorded in this cassette (qwen-image-mock record) instead, offline: "
                            "nothing is sent; the report says which rules the recorded answers break")
    check.add_argument("--provider", action="append", choices=(*(p.name for p in PROVIDERS), "all"),
                       help="provider(s) to check (repeatable; default: all)")
    check.add_argument("--api-key-env", metavar="NAME",
                       help="environment variable holding the API key (default: "
                            + " / ".join(p.api_key_env for p in PROVIDERS) + ")")
    check.add_argument("--max-requests", type=int, default=20, metavar="N",
                       help="at most N requests that generate images (paid) on a live target (default: %(default)s)")
    check.add_argument("--rps", type=float, default=2.0, metavar="R",
                       help="at most R requests per second to a live target (default: %(default)s)")
    check.add_argument("--report", metavar="PATH",
                       help="write PATH.md and PATH.json (default: a temporary file, printed and removed)")
    check.add_argument("--record", metavar="DIR", help="record exchanges as fixtures under DIR (keys redacted)")
    check.add_argument("--strict-mode", action="store_true",
                       help="also check the strict rules (x-strict, unknown fields refused, image sides)")
    check.add_argument("--frozen-time", type=int, metavar="T", help="the target's clock is frozen at T")
    check.add_argument("--examples", type=int, metavar="N", help="Hypothesis examples per rule")
    check.add_argument("--target-kind", choices=("auto", "mock", "provider"), default="auto",
                       help="is the target qwen-image-mock (its determinism is then checked too)")
    check.add_argument("--quiet-report", action="store_true", help="print only the summary, not the whole report")
    check.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS",
                       help="passed to pytest as they are (after --)")
    return check


def pytest_argv(args: argparse.Namespace, report: str) -> list[str]:
    suite = suite_dir()
    argv = [str(suite), "-c", os.devnull, "--rootdir", str(suite), "-p", "no:cacheprovider", "-q", "-rs",
            # mockserver is imported already (this command is part of it): nothing to rewrite
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
            "--report", report, "--max-requests", str(args.max_requests), "--rps", str(args.rps),
            "--target-kind", args.target_kind]
    if args.base_url:
        argv += ["--base-url", args.base_url]
    if args.cassette:
        argv += ["--cassette", args.cassette]
    for provider in args.provider or []:
        argv += ["--provider", provider]
    if args.api_key_env:
        argv += ["--api-key-env", args.api_key_env]
    if args.record:
        argv += ["--record", args.record]
    if args.strict_mode:
        argv.append("--strict-mode")
    if args.frozen_time is not None:
        argv += ["--frozen-time", str(args.frozen_time)]
    if args.examples is not None:
        argv += ["--examples", str(args.examples)]
    return argv + list(args.pytest_args)


def run(args: argparse.Namespace) -> int:
    import importlib.util

    missing = [name for name in ("pytest", "hypothesis", "jsonschema", "httpx") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"qwen-image-mock check needs the test extra: pip install 'qwen-image-mock[test]' "
              f"(missing: {', '.join(missing)})", file=sys.stderr)
        return 2
    if args.cassette and args.base_url:
        print("qwen-image-mock check: give --cassette (recorded exchanges, offline) or --base-url, not both",
              file=sys.stderr)
        return 2
    import pytest
    with tempfile.TemporaryDirectory(prefix="qwen-mock-check-") as scratch:
        report = args.report or str(Path(scratch) / "report")
        code = int(pytest.main(pytest_argv(args, report)))
        markdown = Path(report).with_suffix("") if Path(report).suffix in (".md", ".json") else Path(report)
        md_file = markdown.with_name(markdown.name + ".md")
        if md_file.is_file():
            text = md_file.read_text()
            print()
            if args.quiet_report:
                print("\n".join(text.splitlines()[:8]))
            else:
                print(text)
            if args.report:
                print(f"report written to {md_file} and {md_file.with_suffix('.json')}")
        else:
            print("no report was written (no rule ran)", file=sys.stderr)
    return code

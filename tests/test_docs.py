"""Documentation that runs: every fenced code block in README.md and docs/*.md is executed
(or, where it cannot be, checked) against a live mock, so the examples cannot rot.

How a block is handled, by its language tag (a block without one, or with another, fails):

- ``python``: a script runs in a fresh interpreter (this venv's python, cwd = the repository).
  A block defining ``test_*`` functions is a pytest file: the test blocks of one Markdown
  file run together in one pytest process, in a scratch folder that also holds the file's
  named Python blocks (``# photo_app.py`` as the first line names one), and every test must
  pass.
- ``sh`` (or ``bash``): ``bash -euo pipefail``, cwd = the repository, with this venv's
  ``bin`` first on ``PATH`` (as after ``pip install .``).
- ``json``: must parse. ``toml``: must parse and be accepted by the config reader.
  ``ini``: must parse; a ``pytest.ini`` is run with a probe test that checks the plugin read
  the config file it names. ``text``: not code (a tree, an output), not run.

The one change made to a block before it runs: the documented base ``127.0.0.1:8000``
becomes the live mock's ``127.0.0.1:<port>`` (``at_live_port``). The mock's scenarios and
journal are emptied before each block, as if it had just been started.

Directives, as an HTML comment on the line before a block:

- ``<!-- doc-test: output -->``: this ``json`` or ``text`` block shows what the block right
  before it prints; the run's output is compared with it. ``...`` stands for any text;
  a JSON object with a ``"...": "..."`` entry may have more keys; numbers must be equal,
  except those that differ from run to run by nature (``VARYING_NUMBERS``: clocks, counters,
  process ids, durations), compared by type only. A provider response (or error) is validated
  against ``schemas/<provider>/``.
- ``<!-- doc-test: not run: <reason> -->``: the block cannot run here (it blocks forever,
  recurses into this suite, or calls a real provider). What can be checked is checked,
  command by command: ``make T`` with ``make -n T``; ``pytest ARGS`` with
  ``--collect-only``; ``qwen-image-mock ...`` by its argument parser, and a command aimed
  at a real endpoint (``--base-url https://...``) is run against the live mock instead, in
  a scratch folder, with three changes: its base URL substituted, ``--rps 0`` (so as not to
  wait for a rate limit meant for a paid API), and without its key variable (a placeholder
  such as ``MODELVERSE_API_KEY=...``; the mock takes any token, and given a key the kit
  would expect a target that checks keys).
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, LiveServer
from jsonschema import Draft202012Validator

from mockserver.cli import build_parser
from mockserver.providers import PROVIDERS
from mockserver.core.config import read_config
from mockserver.core.settings import Settings

DOCUMENTED_BASE = "127.0.0.1:8000"
LANGUAGES = {"python", "sh", "bash", "json", "toml", "ini", "text"}
RUNNABLE = {"python", "sh", "bash"}
# How a block shows which provider it calls: its path, or its client library's call.
PROVIDER_PATHS = {**{p.path: p.name for p in PROVIDERS}, "images.generate(": "modelverse",
                  "MultiModalConversation": "dashscope"}
BIN = Path(sys.executable).parent
RUN_TIMEOUT = 120


def doc_files() -> list[Path]:
    """README.md and every docs/*.md, found afresh on each run."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# --- finding the blocks -------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<text>.*?)\s*-->\s*$")
NAMED_FILE = re.compile(r"^#\s*(?P<name>[\w./-]+\.(?:py|toml|ini))\b")


@dataclass(frozen=True)
class Block:
    doc: str            # path relative to the repository
    line: int           # line of the opening fence, 1-based
    lang: str           # first word of the info string; "" if none
    code: str
    directive: str | None = None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def not_run_reason(self) -> str | None:
        """The reason of a ``not run:`` directive ("" if it gives none), None without one."""
        if self.directive is None or not re.match(r"not[ -]run\b", self.directive):
            return None
        return self.directive.partition(":")[2].strip()

    @property
    def is_output(self) -> bool:
        return self.directive == "output"

    @property
    def filename(self) -> str | None:
        """The file a block stands for, when its first line names it: ``# photo_app.py``."""
        match = NAMED_FILE.match(self.code)
        return match["name"] if match else None

    @property
    def test_names(self) -> list[str]:
        """The test functions of a Python block (a pytest file if any)."""
        if self.lang != "python":
            return []
        return [node.name for node in ast.parse(self.code).body
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")]


@dataclass
class Doc:
    path: str
    blocks: list[Block] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # directives attached to no block, unclosed fences


def parse_markdown(text: str, path: str) -> Doc:
    doc = Doc(path)
    lines = text.splitlines()
    pending: tuple[int, str] | None = None   # a directive waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE.match(line)
        if directive:
            if pending:
                doc.problems.append(f"{path}:{pending[0]}: directive not followed by a code block")
            pending = (i + 1, directive["text"])
        elif line.lstrip().startswith("<!--") and "doc-test" in line:
            doc.problems.append(f"{path}:{i + 1}: malformed doc-test directive: {line.strip()}")
        fence = FENCE.match(line)
        if fence:
            marker, indent = fence["fence"], len(fence["indent"])
            closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not closing.match(lines[j]):
                body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
                j += 1
            if j == len(lines):
                doc.problems.append(f"{path}:{i + 1}: code block never closed")
            words = fence["info"].split()
            doc.blocks.append(Block(path, i + 1, words[0] if words else "", "\n".join(body) + "\n",
                                    pending[1] if pending else None))
            pending = None
            i = j + 1
            continue
        if pending and line.strip() and not directive:
            doc.problems.append(f"{path}:{pending[0]}: directive not right before a code block")
            pending = None
        i += 1
    if pending:
        doc.problems.append(f"{path}:{pending[0]}: directive not followed by a code block")
    return doc


@cache
def load_doc(path: str) -> Doc:
    return parse_markdown((ROOT / path).read_text(encoding="utf-8"), path)


def all_docs() -> list[Doc]:
    return [load_doc(str(path.relative_to(ROOT))) for path in doc_files()]


def all_blocks() -> list[Block]:
    return [block for doc in all_docs() for block in doc.blocks]


def block_problems(block: Block) -> list[str]:
    """What is wrong with a block's tag and directive, before it is run."""
    problems = []
    if not block.lang:
        problems.append("no language tag (use ```text for what is not code)")
    elif block.lang not in LANGUAGES:
        problems.append(f"unknown language tag {block.lang!r}; known: {', '.join(sorted(LANGUAGES))}")
    if block.directive is not None:
        reason = block.not_run_reason
        if reason == "":
            problems.append("marked not run without a reason: <!-- doc-test: not run: <reason> -->")
        elif reason is None and not block.is_output:
            problems.append(f"unknown directive {block.directive!r}; known: 'not run: <reason>', 'output'")
        elif reason and block.lang not in RUNNABLE:
            problems.append("only python and sh blocks can be marked not run")
        elif block.is_output and block.lang not in ("json", "text"):
            problems.append("an output block is json or text")
    return problems


# --- the live mock --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    server.stop()


def at_live_port(code: str, mock: LiveServer) -> str:
    """The one change made to a block: the documented base becomes the live mock's."""
    return code.replace(DOCUMENTED_BASE, f"127.0.0.1:{mock.port}")


def reset(mock: LiveServer) -> None:
    """Scenarios and journal emptied: each block meets the mock as if just started."""
    for path in ("/__mock/scenarios", "/__mock/requests"):
        httpx.delete(mock.base_url + path, timeout=10).raise_for_status()


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("QWEN_MOCK_", "PYTEST_")) and key not in ("PYTHONPATH",)}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(BIN.parent),
            "PYTHONDONTWRITEBYTECODE": "1", **extra}


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (f"$ {shlex.join(self.argv)}\nexit status {self.returncode} after {self.seconds:.1f} s\n"
                f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}")

    def assert_clean(self) -> None:
        assert self.returncode == 0, self.describe()
        assert "Traceback (most recent call last)" not in self.stdout + self.stderr, self.describe()


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    start = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=cwd, env=env or environment(), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:
        def text(output: bytes | str | None) -> str:
            return output.decode(errors="replace") if isinstance(output, bytes) else output or ""

        return Run(argv, -1, text(expired.stdout), text(expired.stderr) + f"\n[killed after {RUN_TIMEOUT} s]",
                   time.monotonic() - start)
    return Run(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def script_name(block: Block, suffix: str) -> str:
    stem = re.sub(r"\W+", "_", Path(block.doc).stem.lower())
    return f"{stem}_line{block.line}{suffix}"


def run_script(block: Block, mock: LiveServer, scratch: Path) -> Run:
    reset(mock)
    if block.lang == "python":
        script = scratch / script_name(block, ".py")
        script.write_text(at_live_port(block.code, mock))
        return run([sys.executable, str(script)], ROOT)
    script = scratch / script_name(block, ".sh")
    script.write_text(at_live_port(block.code, mock))
    return run(["bash", "-euo", "pipefail", str(script)], ROOT)


# --- comparing output with what the docs show --------------------------------------------------


def provider_of(code: str) -> str | None:
    found = {provider for marker, provider in PROVIDER_PATHS.items() if marker in code}
    return found.pop() if len(found) == 1 else None


@cache
def schema(provider: str, kind: str) -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / provider / f"{kind}.json").read_text())


def assert_valid(instance: Any, provider: str, kind: str, what: str) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"
              for e in Draft202012Validator(schema(provider, kind)).iter_errors(instance)]
    assert not errors, f"{what} is not a valid {provider} {kind}: " + "; ".join(errors)


def like(pattern: str, text: str) -> bool:
    """``...`` in the docs stands for any text."""
    regex = ".*?".join(re.escape(part) for part in pattern.split("..."))
    return re.fullmatch(regex, text, re.DOTALL) is not None


# Numbers that differ from run to run whatever the request: clocks, counters, process ids,
# timings. Any other number an example shows must be what the mock sends.
VARYING_NUMBERS = frozenset({"created", "time", "id", "worker", "duration_ms"})


def assert_like(expected: Any, actual: Any, where: str = "$") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: the docs show an object, the mock sent {actual!r:.100}"
        shown = set(expected) - {"..."}
        missing = shown - set(actual)
        assert not missing, f"{where}: the docs show {sorted(missing)}, the mock does not send it"
        if expected.get("...") != "...":
            extra = set(actual) - shown
            assert not extra, (f"{where}: the mock sends {sorted(extra)}, which the docs do not show "
                               f"(show it, or add a \"...\": \"...\" entry)")
        for key in sorted(shown):
            assert_like(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: the docs show a list, the mock sent {actual!r:.100}"
        assert len(actual) == len(expected), f"{where}: the docs show {len(expected)} items, the mock sent {len(actual)}"
        for index, (shown_item, sent_item) in enumerate(zip(expected, actual)):
            assert_like(shown_item, sent_item, f"{where}[{index}]")
    elif isinstance(expected, str):
        assert isinstance(actual, str) and like(expected, actual), \
            f"{where}: the docs show {expected!r:.120}, the mock sent {actual!r:.120}"
    elif isinstance(expected, bool) or expected is None:
        assert actual is expected, f"{where}: the docs show {expected!r}, the mock sent {actual!r}"
    else:
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), \
            f"{where}: the docs show a number, the mock sent {actual!r:.100}"
        if where.rpartition(".")[2] not in VARYING_NUMBERS:
            assert actual == expected, f"{where}: the docs show {expected!r}, the mock sent {actual!r}"


def split_http(text: str) -> tuple[str, dict[str, str], str]:
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    status, *header_lines = head.splitlines()
    headers = {}
    for header in header_lines:
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status.strip(), headers, body.strip()


def kind_of(answer: Any) -> str | None:
    """What a JSON answer looks like: a provider's ``response``, its ``error``, or neither
    (the admin endpoints' answers, the journal)."""
    if isinstance(answer, dict) and ("error" in answer or {"code", "message", "request_id"} <= set(answer)):
        return "error"
    if isinstance(answer, dict) and ({"created", "data"} <= set(answer) or {"output", "usage"} <= set(answer)):
        return "response"
    return None


def assert_valid_answer(answer: Any, code: str, what: str) -> None:
    """A provider's answer validates against that provider's schema (named by the path
    the block calls)."""
    kind = kind_of(answer)
    if kind is None:
        return
    provider = provider_of(code)
    assert provider, f"{what} is a provider's {kind}, but the block does not call exactly one provider"
    assert_valid(answer, provider, kind, what)


def check_body(expected: str, actual: str, code: str) -> None:
    try:
        sent = json.loads(actual)
    except ValueError:
        raise AssertionError(f"the docs show JSON, the block printed:\n{actual[:2000]}") from None
    shown = json.loads(expected)
    assert kind_of(sent) == kind_of(shown), f"the docs show a {kind_of(shown)}, the mock sent {actual[:2000]}"
    assert_like(shown, sent)
    assert_valid_answer(sent, code, "what the mock sent")


def check_output(shown: Block, producer: Block, output: str, mock: LiveServer) -> None:
    """The run's output looks like the output block the docs show after it."""
    expected = at_live_port(shown.code, mock).strip()
    if shown.lang == "json":
        check_body(expected, output, producer.code)
    elif expected.startswith("HTTP/"):
        status, headers, body = split_http(expected)
        sent_status, sent_headers, sent_body = split_http(output)
        assert sent_status == status, f"the docs show {status!r}, the mock answered {sent_status!r}"
        for name, value in headers.items():
            assert name in sent_headers, f"the docs show the header {name}, the mock did not send it"
            assert like(value, sent_headers[name]), f"{name}: the docs show {value!r}, the mock sent {sent_headers[name]!r}"
        if body:
            check_body(body, sent_body, producer.code)
    else:
        shown_lines, printed = expected.splitlines(), output.strip().splitlines()
        assert len(printed) == len(shown_lines) and all(map(like, shown_lines, printed)), \
            f"the docs show:\n{expected}\nthe block printed:\n{output}"


def check_printed(producer: Block, output: str) -> None:
    """No output block: what a call to a provider prints must be a valid response, not an
    error (``curl -s`` exits 0 on a 400)."""
    try:
        answer = json.loads(output)
    except ValueError:
        return
    assert kind_of(answer) != "error", f"the block printed an error:\n{output[:2000]}"
    assert_valid_answer(answer, producer.code, "what the block printed")


# --- pytest files ---------------------------------------------------------------------------


def file_of_test_block(block: Block) -> str:
    return block.filename or "test_" + script_name(block, ".py")


# Loaded into the docs' pytest runs (-p): a test that hangs fails alone, with a traceback
# showing where, and the others still run.
TIME_LIMIT_PLUGIN = '''
import signal

import pytest

LIMIT = {limit}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    def expire(signum, frame):
        raise TimeoutError(f"{{item.nodeid}} ran over {{LIMIT}} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(LIMIT)
    try:
        return (yield)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
'''
TEST_TIME_LIMIT = 30


@dataclass
class PytestRun:
    run: Run
    outcomes: dict[tuple[str, str], str]   # (module, test) -> passed / failed / error / skipped


_pytest_runs: dict[str, PytestRun] = {}


def run_doc_tests(doc: Doc, scratch: Path) -> PytestRun:
    """All the test blocks of one Markdown file in one pytest process (one start-up, one
    plugin server), beside the file's named Python blocks."""
    if doc.path in _pytest_runs:
        return _pytest_runs[doc.path]
    folder = scratch / "pytest"
    folder.mkdir()
    written: set[str] = set()
    for block in doc.blocks:
        if block.lang != "python" or block.not_run_reason is not None:
            continue
        name = file_of_test_block(block) if block.test_names else block.filename
        if name is None:
            continue
        assert name not in written, f"{block.id}: a second block named {name}"
        written.add(name)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(block.code)
    plugins = scratch / "plugins"
    plugins.mkdir()
    (plugins / "doc_test_time_limit.py").write_text(TIME_LIMIT_PLUGIN.format(limit=TEST_TIME_LIMIT))
    report = scratch / "junit.xml"
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "doc_test_time_limit",
                  "-o", "junit_family=xunit1", f"--junitxml={report}", "."], folder,
                 environment(PYTHONPATH=str(plugins)))
    outcomes: dict[tuple[str, str], str] = {}
    if report.exists():
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
            name = case.get("name", "").partition("[")[0]   # test_x[asyncio]: anyio's backend
            previous = outcomes.get((case.get("classname", ""), name), "passed")
            outcomes[(case.get("classname", ""), name)] = outcome if previous == "passed" else previous
    _pytest_runs[doc.path] = PytestRun(result, outcomes)
    return _pytest_runs[doc.path]


def check_test_block(block: Block, scratch: Path) -> None:
    doc_run = run_doc_tests(load_doc(block.doc), scratch)
    module = file_of_test_block(block).removesuffix(".py").replace("/", ".")
    outcomes = {name: outcome for (classname, name), outcome in doc_run.outcomes.items() if classname == module}
    assert sorted(outcomes) == sorted(block.test_names), \
        f"pytest ran {sorted(outcomes)} of {module}, the block defines {block.test_names}\n{doc_run.run.describe()}"
    failed = {name: outcome for name, outcome in outcomes.items() if outcome != "passed"}
    assert not failed, f"{module}: {failed}\n{doc_run.run.describe()}"


# --- what is checked of a block that is not run ---------------------------------------------------


def shell_commands(code: str) -> Iterator[tuple[dict[str, str], list[str]]]:
    """Each command of a simple shell block: its variable assignments and its words."""
    for command in code.replace("\\\n", " ").splitlines():
        words = shlex.split(command, comments=True)
        if not words:
            continue
        assert not set(words) & {"|", "&&", "||", ";", "&"}, f"no check known for a compound command: {command}"
        env = {}
        while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        yield env, words


def base_url_of(words: list[str]) -> str | None:
    for index, word in enumerate(words):
        if word == "--base-url" and index + 1 < len(words):
            return words[index + 1]
        if word.startswith("--base-url="):
            return word.partition("=")[2]
    return None


def check_not_run(block: Block, mock: LiveServer, scratch: Path) -> None:
    assert block.lang in ("sh", "bash"), "a python block that cannot run: no check is known"
    for env, words in shell_commands(block.code):
        program, args = words[0], words[1:]
        if program == "make":
            result = run(["make", "-n", *args], ROOT)
            result.assert_clean()
        elif program == "pytest":
            result = run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args], ROOT)
            result.assert_clean()
            assert re.search(r"\d+ tests? collected", result.stdout), result.describe()
        elif program == "qwen-image-mock":
            base_url = base_url_of(args)
            if base_url and DOCUMENTED_BASE not in base_url:
                # Aimed at a real endpoint: run against the live mock instead, without the
                # key placeholder (the mock takes any token; given a key, the kit would
                # expect a target that checks keys), and without a rate limit meant for a
                # paid API.
                args = [mock.base_url if arg == base_url else arg for arg in args]
                args = [args[0], "--rps", "0", *args[1:]] if args[0] == "check" else args
                reset(mock)
                keyless = {k: v for k, v in environment().items() if k not in env and not k.endswith("_API_KEY")}
                result = run([str(BIN / program), *args], scratch, keyless)
                result.assert_clean()
                assert re.search(r"\b0 failed\b", result.stdout), result.describe()
                if "--report" in args:
                    report = args[args.index("--report") + 1]
                    for suffix in (".md", ".json"):
                        assert (scratch / (report + suffix)).is_file(), f"no report {report}{suffix}\n{result.describe()}"
            else:
                try:
                    build_parser().parse_args(args)
                except SystemExit as error:
                    raise AssertionError(f"qwen-image-mock does not accept: {shlex.join(args)}") from error
        else:
            raise AssertionError(f"no check known for a not-run {program!r} command: add one to tests/test_docs.py")


# --- non-code blocks ----------------------------------------------------------------------------


def check_toml(block: Block, scratch: Path) -> None:
    path = scratch / (Path(block.filename).name if block.filename else "config.toml")
    path.write_text(block.code)
    tomllib.loads(block.code)
    read_config(str(path), Settings.specs())
    Settings.from_env(environ={}, config=str(path))   # and the settings it makes are valid together


# The fixtures keep their controls and one worker whatever the file says (see the docs).
FIXTURES_OVERRIDE = {"admin_token", "disable_admin", "workers"}

PROBE = '''
from dataclasses import fields

from mockserver.core.config import read_config
from mockserver.core.settings import Settings


def test_the_plugin_reads_the_config_file(qwen_mock, qwen_mock_server):
    path = {path!r}
    expected = read_config(path, Settings.specs())
    assert expected, "the config file sets nothing"
    settings = qwen_mock_server.settings
    for name, value in expected.items():
        if name not in {override!r}:
            assert getattr(settings, name) == value, name
    if settings.api_keys:
        assert qwen_mock.api_key in settings.api_keys
'''


def check_ini(block: Block, scratch: Path) -> None:
    parser = configparser.ConfigParser()
    parser.read_string(block.code)
    if block.filename != "pytest.ini":
        return
    folder = scratch / "ini"
    folder.mkdir()
    (folder / "pytest.ini").write_text(block.code)
    assert parser.has_section("pytest"), "a pytest.ini without a [pytest] section"
    config = parser["pytest"].get("qwen_mock_config")
    assert config, "a pytest.ini in the docs without qwen_mock_config: nothing to check"
    named = [b for b in load_doc(block.doc).blocks if b.filename == config]
    assert len(named) == 1, f"the docs show no block named {config} (its first line: # {config})"
    config_block = named[0]
    (folder / config).parent.mkdir(parents=True, exist_ok=True)
    (folder / config).write_text(config_block.code)
    (folder / "test_probe.py").write_text(PROBE.format(path=config, override=FIXTURES_OVERRIDE))
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_probe.py"], folder)
    result.assert_clean()
    assert "1 passed" in result.stdout, result.describe()


def producer_of(block: Block) -> Block | None:
    blocks = load_doc(block.doc).blocks
    index = blocks.index(block)
    return blocks[index - 1] if index and blocks[index - 1].lang in RUNNABLE else None


def output_block_of(block: Block) -> Block | None:
    blocks = load_doc(block.doc).blocks
    index = blocks.index(block)
    following = blocks[index + 1] if index + 1 < len(blocks) else None
    return following if following is not None and following.is_output else None


# --- the tests ----------------------------------------------------------------------------------


def test_the_docs_are_found():
    paths = [doc.path for doc in all_docs()]
    assert "README.md" in paths and "docs/testing-your-integration.md" in paths
    assert all(doc.blocks for doc in all_docs() if doc.path == "README.md")


@pytest.mark.parametrize("doc", [str(path.relative_to(ROOT)) for path in doc_files()])
def test_directives_sit_right_before_a_block(doc):
    assert not load_doc(doc).problems


@pytest.mark.parametrize("block", all_blocks(), ids=lambda block: f"{block.id}-{block.lang or 'untagged'}")
def test_block(block: Block, mock: LiveServer, tmp_path: Path):
    problems = block_problems(block)
    assert not problems, f"{block.id}: " + "; ".join(problems)
    if block.not_run_reason:
        check_not_run(block, mock, tmp_path)
    elif block.is_output:
        producer = producer_of(block)
        assert producer is not None and producer.not_run_reason is None and not producer.test_names, \
            f"{block.id}: an output block must follow a python or sh block that is run as a script"
        if block.lang == "json":
            assert_valid_answer(json.loads(block.code), producer.code, "the example")
        elif block.code.startswith("HTTP/"):
            _, _, body = split_http(block.code)
            if body:
                assert_valid_answer(json.loads(body), producer.code, "the example")
    elif block.lang == "python" and block.test_names:
        check_test_block(block, tmp_path)
    elif block.lang in RUNNABLE:
        result = run_script(block, mock, tmp_path)
        result.assert_clean()
        shown = output_block_of(block)
        if shown is not None:
            check_output(shown, block, result.stdout, mock)
        else:
            check_printed(block, result.stdout)
    elif block.lang == "json":
        json.loads(block.code)
    elif block.lang == "toml":
        check_toml(block, tmp_path)
    elif block.lang == "ini":
        check_ini(block, tmp_path)
    # text: not code


def test_make_serve_serves_the_documented_base():
    """What the blocks are written against (and what at_live_port replaces) is what
    ``make serve`` starts."""
    result = run(["make", "-n", "serve"], ROOT)
    result.assert_clean()
    host, port = DOCUMENTED_BASE.split(":")
    assert f"serve --host {host} --port {port}" in result.stdout, result.describe()


def test_readme_says_where_the_test_extra_comes_from():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "test" in pyproject["project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    assert "pip install '.[test]'" in readme and "pip install 'qwen-image-mock[test]'" in readme


MARKDOWN_WITH_FAULTS = textwrap.dedent("""\
    ```
    untagged
    ```

    ```perl
    print "hi";
    ```

    <!-- doc-test: not run: -->
    ```sh
    make serve
    ```

    <!-- doc-test: skip -->
    ```sh
    true
    ```

    <!-- doc-test: output -->

    Some prose.
    """)


def test_the_checks_catch_bad_blocks():
    doc = parse_markdown(MARKDOWN_WITH_FAULTS, "faulty.md")
    problems = [block_problems(block) for block in doc.blocks]
    assert [len(p) for p in problems] == [1, 1, 1, 1]
    assert "no language tag" in problems[0][0]
    assert "unknown language tag 'perl'" in problems[1][0]
    assert "without a reason" in problems[2][0]
    assert "unknown directive 'skip'" in problems[3][0]
    assert doc.problems == ["faulty.md:19: directive not right before a code block"]


def test_the_output_comparison_catches_differences():
    sent = {"data": [{"url": "http://127.0.0.1:8000/files/abc.0.png"}], "created": 17, "extra": True,
            "n": 2}
    assert_like({"data": [{"url": "http://127.0.0.1:8000/files/....png"}], "created": 1, "...": "..."}, sent)
    with pytest.raises(AssertionError, match=re.escape("$.n: the docs show 3, the mock sent 2")):
        assert_like({"n": 3, "...": "..."}, sent)
    wrong = [
        ({"data": [{"url": "http://127.0.0.1:8000/files/....png"}], "created": 1}, "which the docs do not show"),
        ({"data": [], "created": 1, "...": "..."}, "the docs show 0 items"),
        ({"data": [{"url": "https://..."}], "created": 1, "...": "..."}, "the docs show 'https://...'"),
        ({"data": [{"url": "..."}], "created": "1", "...": "..."}, "the docs show '1'"),
        ({"data": [{"url": "...", "b64_json": "..."}], "created": 1, "...": "..."}, "the mock does not send it"),
        ({"data": [{"url": "..."}], "created": 1, "extra": False, "...": "..."}, "the docs show False"),
        ({"data": [{"url": "..."}], "created": 1, "extra": 1, "...": "..."}, "the docs show a number"),
    ]
    for shown, message in wrong:
        with pytest.raises(AssertionError, match=re.escape(message)):
            assert_like(shown, sent)

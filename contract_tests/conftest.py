"""pytest wiring of the contract suite: options, the Hypothesis profiles, one test per
rule, and the conformance report.

    pytest contract_tests                                  # the mock, in process
    pytest contract_tests --base-url URL --provider P      # any live server
    pytest contract_tests --cassette DIR                   # a recorded cassette, offline
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from .catalogue import KEY_ENV, PROVIDERS, Rule, all_rules, recorded_rules
from .recorded import CassetteError, forget_cassettes, load_cassette
from .report import Report, Result
from .session import Contract, Options
from .target import is_loopback

CONTRACT_KEY = pytest.StashKey[Contract]()

# The suite's own Hypothesis profiles, chosen with $CONTRACT_HYPOTHESIS_PROFILE (default
# contract-ci) and applied to every rule's test explicitly, so a profile loaded by another
# conftest (tests/ loads its own "ci") does not change the suite, and the suite run
# standalone behaves as it does in `make test`. Counts: max_examples per valid-request
# rule; rejection rules get half (at least 2); see Contract.examples.
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
settings.register_profile("contract-ci", derandomize=True, deadline=None, max_examples=20, database=None,
                          print_blob=False, suppress_health_check=SUPPRESSED)
settings.register_profile("contract-dev", deadline=None, max_examples=100, suppress_health_check=SUPPRESSED)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("contract", "qwen-image-mock contract tests")
    group.addoption("--base-url", dest="contract_base_url", default=None, metavar="URL",
                    help="check a live server at URL (e.g. http://127.0.0.1:8000 or the provider's API base); "
                         "default: the mock, in process")
    group.addoption("--provider", dest="contract_provider", action="append", choices=(*PROVIDERS, "all"),
                    help="provider(s) to check (repeatable; default: all)")
    group.addoption("--api-key-env", dest="contract_api_key_env", default=None, metavar="NAME",
                    help="environment variable holding the API key (default: " + " / ".join(KEY_ENV.values())
                         + "); the mock on 127.0.0.1 accepts any token")
    group.addoption("--max-requests", dest="contract_max_requests", type=int, default=20, metavar="N",
                    help="live targets: at most N requests that generate images (paid); further paid checks "
                         "are skipped (default: %(default)s)")
    group.addoption("--rps", dest="contract_rps", type=float, default=2.0, metavar="R",
                    help="live targets: at most R requests per second (default: %(default)s; 0: no limit)")
    group.addoption("--report", dest="contract_report", default=None, metavar="PATH",
                    help="write the conformance report to PATH.md and PATH.json")
    group.addoption("--record", dest="contract_record", default=None, metavar="DIR",
                    help="record every exchange as a JSON fixture under DIR/<provider>/<rule>/ "
                         "(keys redacted, images reduced to sha256, size and dimensions)")
    group.addoption("--strict-mode", dest="contract_strict", action="store_true",
                    help="also check the strict rules (x-strict keywords, unknown fields refused, recommended "
                         "image sides); the in-process mock is started in strict mode")
    group.addoption("--frozen-time", dest="contract_frozen_time", type=int, default=None, metavar="T",
                    help="the target's clock is frozen at Unix time T: expect created == T "
                         "(the in-process mock is started with it)")
    group.addoption("--examples", dest="contract_examples", type=int, default=None, metavar="N",
                    help="Hypothesis examples per rule (default: the profile's count in process; "
                         "1 per paid rule and 2 per rejection rule on a live target)")
    group.addoption("--asgi-app", dest="contract_asgi_app", default=None, metavar="MODULE:FACTORY",
                    help="in process, test this ASGI app instead of the mock: FACTORY(settings) -> app")
    group.addoption("--target-kind", dest="contract_target_kind", default="auto", choices=("auto", "mock", "provider"),
                    help="whether the target is qwen-image-mock (checks its determinism too); auto: in process, "
                         "or a 127.0.0.1 server whose /openapi.json says so")
    group.addoption("--max-body-bytes", dest="contract_max_body_bytes", type=int, default=20 * 1024 * 1024,
                    metavar="N", help="the body size limit to expect 413 above (default: 20 MiB)")
    group.addoption("--shrink", dest="contract_shrink", action="store_true",
                    help="in process: let Hypothesis shrink a failing example to a minimal one (slower)")
    group.addoption("--request-timeout", dest="contract_timeout", type=float, default=120.0, metavar="S",
                    help="live targets: seconds to wait for an answer (default: %(default)s)")
    group.addoption("--cassette", dest="contract_cassette", default=None, metavar="DIR",
                    help="check the exchanges recorded in this cassette (qwen-image-mock record), offline: nothing "
                         "is sent; the providers it holds unless --provider says")
    group.addoption("--no-plan", dest="contract_no_plan", action="store_true",
                    help="send no planned requests (n at its bounds, each response format, sizes at their bounds, "
                         "the most input images...): check valid answers on drawn examples only")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rules(*kinds): parametrize the test with the catalogue's rules of these kinds")
    cassette = config.getoption("contract_cassette")
    forget_cassettes()
    if cassette is not None:
        if config.getoption("contract_base_url"):
            raise pytest.UsageError("--cassette checks recorded exchanges offline: give it or --base-url, not both")
        try:
            load_cassette(cassette)
        except CassetteError as error:
            raise pytest.UsageError(f"--cassette: {error}") from None
    options = Options.from_config(config)
    if options.base_url and not config.getoption("contract_provider") and not is_loopback(options.base_url):
        raise pytest.UsageError(f"--provider {'|'.join(PROVIDERS)} is required with a --base-url that is not "
                                "a mock on 127.0.0.1: a real endpoint serves one provider")
    description = options.base_url or "the mock, in process" + (f" ({options.asgi_app})" if options.asgi_app else "")
    if cassette is not None:
        held = load_cassette(cassette)
        description = (f"the cassette {cassette} ({len(held.exchanges)} exchanges"
                       + (f", recorded from {held.upstream}" if held.upstream else "") + "), offline")
    report = Report({
        "description": description,
        "base_url": options.base_url,
        "cassette": cassette,
        "live": options.base_url is not None,
        "strict": options.strict,
        "frozen_time": options.frozen_time,
        "providers": list(options.providers),
    })
    config.stash[CONTRACT_KEY] = Contract(options, report)


def pytest_unconfigure(config: pytest.Config) -> None:
    contract = config.stash.get(CONTRACT_KEY, None)
    if contract is not None:
        contract.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("rules")
    if marker is None or "rule" not in metafunc.fixturenames:
        return
    contract = metafunc.config.stash[CONTRACT_KEY]
    rules = [rule for provider in contract.options.providers
             for rule in all_rules(provider) + (recorded_rules(provider) if contract.cassette else ())
             if rule.kind in marker.args]
    metafunc.parametrize("rule", rules, ids=[rule.id for rule in rules])


KIND_ORDER = {"response": 0, "schema": 1, "semantic": 2, "protocol": 3, "mock": 4, "recorded": 5}


def pytest_ignore_collect(collection_path, config: pytest.Config) -> bool | None:
    """The rules only a cassette checks are collected in a --cassette run only."""
    if collection_path.name == "test_recorded.py" and not config.getoption("contract_cassette", None):
        return True
    return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The checks of valid requests first: on a live target they get the paid budget first."""
    def order(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        rule = callspec.params.get("rule") if callspec else None
        # another suite collected in the same run may have a parameter of that name
        return KIND_ORDER.get(rule.kind, 5) if isinstance(rule, Rule) else -1

    items.sort(key=order)  # stable: within a kind, the catalogue's order


@pytest.fixture(scope="session")
def contract(request: pytest.FixtureRequest) -> Contract:
    return request.config.stash[CONTRACT_KEY]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    rule = callspec.params.get("rule") if callspec else None
    contract = item.config.stash.get(CONTRACT_KEY, None)
    if not isinstance(rule, Rule) or contract is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            result = Result(rule, "pass", duration=report.duration, note=contract.notes.get(rule.id, ""))
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            result = Result(rule, "not run", reason=reason.removeprefix("Skipped: "))
        else:
            message = call.excinfo.exconly() if call.excinfo else report.longreprtext[-3000:]
            exchanges = list(contract.target.current) if contract._target is not None else []
            result = Result(rule, "fail" if report.when == "call" else "error", message=message,
                            exchanges=exchanges, duration=report.duration)
        contract.report.add(result)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    contract = session.config.stash.get(CONTRACT_KEY, None)
    if contract is None or not contract.report.results:
        return
    if contract._target is not None:
        contract.report.budget = contract._target.budget.as_dict()
    contract.report.plan = contract.plan_report()
    if contract.options.report:
        contract.report.written = contract.report.write(contract.options.report)  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    contract = config.stash.get(CONTRACT_KEY, None)
    if contract is None or not contract.report.results:
        return
    counts = contract.report.counts()
    write = terminalreporter.write_line
    terminalreporter.section("contract conformance")
    write(f"target: {contract.report.target['description']}; rules: {counts['pass']} passed, {counts['fail']} failed, "
          f"{counts['not run']} not run" + (f", {counts['error']} errors" if counts.get("error") else ""))
    budget = contract.report.budget
    if budget and budget.get("max_requests") is not None:
        write(f"paid requests: {budget['paid_sent']} of {budget['max_requests']} (--max-requests)"
              + (f"; budget spent: {budget['paid_checks_skipped']} paid check(s) not run"
                 if budget["paid_checks_skipped"] else "; all of it used" if budget["exhausted"] else "")
              + (f"; {budget['unexpected_paid']} should have been rejected" if budget.get("unexpected_paid") else ""))
    for provider, block in (contract.report.plan or {}).items():
        items = block["items"]
        sent = [item for item in items if item["sent"]]
        if not items:
            continue
        line = f"planned requests, {provider}: {len(sent)} of {len(items)} sent"
        paid = (budget or {}).get("paid_by_provider", {}).get(provider)
        if paid is not None:
            line += f"; paid requests, {provider}: {paid}"
        missing = [item for item in items if not item["sent"]]
        if missing:
            line += "; not sent: " + ", ".join(item["name"] for item in missing) + f" ({missing[0]['reason']})"
        write(line)
    failed = [r for r in contract.report.results.values() if r.outcome in ("fail", "error")]
    for result in sorted(failed, key=lambda r: r.rule.id):
        write(f"FAILED {result.rule.id}: {result.rule.meaning}")
    written = getattr(contract.report, "written", None)
    if written:
        write(f"report: {written[0]} and {written[1]}")

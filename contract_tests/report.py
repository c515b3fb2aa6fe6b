"""The conformance report (Markdown for people, JSON for machines) and the redaction of
what goes into it or into recorded fixtures: no credentials, no image bytes.

``--report PATH`` writes ``PATH.md`` and ``PATH.json`` (a ``.md`` or ``.json`` suffix on
PATH is dropped first), and, for each failure, the exact request body beside them in
``PATH.requests/`` so that the curl command in the report reproduces the failure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .catalogue import MEANING, Rule
from .semantics import DATA_URI, describe_image_bytes

LONG_STRING = 200
BODY_LIMIT = 4000
# image data quoted inside a longer string (an error message may echo the offending value)
EMBEDDED_BASE64 = re.compile(r"(data:[\w/.+-]+;base64,)?[A-Za-z0-9+/]{40,}={0,2}")
SECRET_HEADERS = {"authorization", "x-api-key", "api-key", "cookie", "set-cookie"}


# --------------------------------------------------------------------------- redaction


def redact_headers(headers: dict[str, str], key_env: str | None = None) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            scheme, _, token = value.partition(" ")
            out[name] = f"{scheme} <redacted>" if token else "<redacted>"
        else:
            out[name] = value
    return out


def redact_url(url: str) -> str:
    """Signed links carry credentials in the query string: keep scheme, host and path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.query:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "<redacted>", ""))
    return url


def image_summary(text: str) -> dict[str, Any] | None:
    """If ``text`` is inline image data (a data URI or long plain base64), what it is."""
    match = DATA_URI.match(text)
    payload = text[match.end():] if match else text
    if not match and (len(text) < LONG_STRING or not re.fullmatch(r"[A-Za-z0-9+/=\s]+", text[:4096])):
        return None
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return {"redacted": "inline data that is not valid base64", "chars": len(text),
                "sha256": hashlib.sha256(text.encode()).hexdigest()}
    info = describe_image_bytes(data)
    if match:
        info["data_uri_prefix"] = text[: match.end()]
    return info


def redact(value: Any) -> Any:
    """A JSON value with image data reduced to hashes and sizes, long strings shortened,
    signed URL query strings removed."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        summary = image_summary(value)
        if summary is not None:
            return {"<image>": summary}
        if value.startswith(("http://", "https://")):
            return redact_url(value)
        value = EMBEDDED_BASE64.sub(lambda m: f"<base64: {len(m.group(0))} chars>", value)
        if len(value) > LONG_STRING:
            return f"{value[:LONG_STRING]}… <{len(value)} chars, sha256 {hashlib.sha256(value.encode()).hexdigest()[:16]}>"
    return value


def redact_body(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return redact(json.loads(raw))
    except (ValueError, UnicodeDecodeError):
        image = describe_image_bytes(raw) if raw else {}
        if image.get("format"):
            return {"<image>": image}  # a downloaded image: what it is, not its bytes
        text = raw[:BODY_LIMIT].decode("utf-8", "replace")
        return text + (f"… <{len(raw)} bytes>" if len(raw) > BODY_LIMIT else "")


# --------------------------------------------------------------------------- exchanges


@dataclass(repr=False)
class Exchange:
    """One request and what came back (or the transport error)."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: bytes | None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    error: str | None = None
    elapsed: float = 0.0
    paid: bool = False
    cached: bool = False
    key_env: str | None = None
    plan_item: str | None = None  # the planned request this is (or was fetched for)
    recorded: str | None = None  # the cassette's exchange file it was read from (--cassette)
    recorded_at: int | None = None  # when it was recorded (created is checked against this)

    def __repr__(self) -> str:
        return f"<{self.method} {redact_url(self.url)[:80]} -> {self.status or self.error}>"

    @property
    def request_id(self) -> str | None:
        return self.response_headers.get("x-request-id")

    def json(self) -> Any:
        return json.loads(self.response_body)

    def evidence(self) -> dict[str, Any]:
        return {
            "request": {
                "method": self.method,
                "url": redact_url(self.url),
                "headers": redact_headers(self.request_headers),
                "body": redact_body(self.request_body),
            },
            "status": self.status,
            "response_headers": {k: v for k, v in self.response_headers.items()
                                 if k.lower() in ("content-type", "x-request-id", "x-mock-violations",
                                                  "x-mock-warnings", "www-authenticate", "retry-after")},
            "response_body": redact_body(self.response_body),
            "transport_error": self.error,
            "request_id": self.request_id,
            "replayed_from_cache": self.cached,
            "plan_item": self.plan_item,
            **({"recorded": f"exchanges/{self.recorded}"} if self.recorded else {}),
        }

    def curl(self, body_file: str | None) -> str:
        parts = ["curl", "-sS", "-i", "-X", self.method, shlex.quote(self.url)]
        for name, value in self.request_headers.items():
            if name.lower() == "authorization":
                scheme, _, _ = value.partition(" ")
                token = f"${self.key_env}" if self.key_env else "<token>"
                parts += ["-H", f'"{name}: {scheme} {token}"']
            elif name.lower() in ("content-type",):
                parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.request_body is not None:
            if body_file:
                parts += ["--data-binary", shlex.quote(f"@{body_file}")]
            else:
                parts += ["--data-binary", shlex.quote(self.request_body.decode("utf-8", "replace"))]
        return " ".join(parts)


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    rule: Rule
    outcome: str  # pass | fail | not run | error
    reason: str = ""
    message: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    duration: float = 0.0
    note: str = ""  # a pass with something to say (checked on planned requests only, say)


class Report:
    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.results: dict[str, Result] = {}
        self.started = time.time()
        self.budget: dict[str, Any] = {}
        self.plan: dict[str, dict[str, Any]] = {}  # per provider: the planned requests and their fate

    def add(self, result: Result) -> None:
        previous = self.results.get(result.rule.id)
        # a failure in teardown must not hide a pass/fail of the call, and vice versa
        if previous is None or result.outcome in ("fail", "error") or previous.outcome == "not run":
            self.results[result.rule.id] = result

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "not run": 0, "error": 0}
        for result in self.results.values():
            out[result.outcome] = out.get(result.outcome, 0) + 1
        return out

    # -- writing

    def write(self, path: str | Path) -> tuple[Path, Path]:
        base = Path(path)
        if base.suffix in (".md", ".json"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        requests_dir = base.parent / (base.name + ".requests")
        data = self.as_json(requests_dir)
        json_path, md_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".md")
        json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        md_path.write_text(self.as_markdown(data))
        return md_path, json_path

    def as_json(self, requests_dir: Path | None = None) -> dict[str, Any]:
        providers: dict[str, list[dict[str, Any]]] = {}
        for result in sorted(self.results.values(), key=lambda r: (r.rule.provider, _order(r.rule), r.rule.id)):
            entry: dict[str, Any] = {
                "id": result.rule.id,
                "kind": result.rule.kind,
                "field": result.rule.field,
                "keyword": result.rule.keyword,
                "source": result.rule.source,
                "description": result.rule.description,
                "outcome": result.outcome,
            }
            if result.reason:
                entry["reason"] = result.reason
            if result.note:
                entry["note"] = result.note
            if result.outcome in ("fail", "error"):
                entry["meaning"] = MEANING.get(result.rule.source, "")
                entry["message"] = result.message
                entry["evidence"] = [
                    self._evidence(result, exchange, index, requests_dir)
                    for index, exchange in enumerate(result.exchanges)
                ]
            providers.setdefault(result.rule.provider, []).append(entry)
        return {
            "tool": "qwen-image-mock contract tests",
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_seconds": round(time.time() - self.started, 2),
            "target": self.target,
            "budget": self.budget,
            "summary": self.counts(),
            "providers": {name: {"summary": _count(entries), "rules": entries,
                                 **({"plan": self.plan[name]} if name in self.plan else {})}
                          for name, entries in providers.items()},
            "not_checked": NOT_CHECKED,
        }

    def _evidence(self, result: Result, exchange: Exchange, index: int, requests_dir: Path | None) -> dict[str, Any]:
        evidence = exchange.evidence()
        body_file = None
        if requests_dir is not None and exchange.request_body is not None:
            requests_dir.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", result.rule.id).strip("_") + f".{index}.body"
            (requests_dir / name).write_bytes(exchange.request_body)
            body_file = str(requests_dir / name)
        evidence["curl"] = exchange.curl(body_file)
        if exchange.url.startswith("http://testserver/"):
            # in process: the same request against the mock served on its default port
            evidence["curl"] = ("# the target ran in process; serve it first: qwen-image-mock serve "
                                "--api-keys contract-test-key\n"
                                + exchange.curl(body_file).replace("http://testserver/", "http://127.0.0.1:8000/", 1)
                                .replace('Bearer <token>', 'Bearer contract-test-key'))
        return evidence

    def as_markdown(self, data: dict[str, Any]) -> str:
        lines = ["# Conformance report", ""]
        target = data["target"]
        lines += [
            f"- Target: **{target.get('description')}**",
            f"- Providers: {', '.join(data['providers']) or 'none'}; strict checks: "
            f"{'on' if target.get('strict') else 'off'}",
            f"- Generated {data['generated']} in {data['duration_seconds']} s",
        ]
        summary = data["summary"]
        lines.append(f"- Result: **{summary['pass']} passed, {summary['fail']} failed, "
                     f"{summary['not run']} not run**" + (f", {summary['error']} errors" if summary.get("error") else ""))
        budget = data.get("budget") or {}
        if budget and budget.get("max_requests") is not None:
            lines.append(f"- Paid requests (those that generate images): {budget.get('paid_sent', 0)} sent of "
                         f"{budget.get('max_requests', '∞')} allowed"
                         + (" — **budget spent: later paid checks were not run**" if budget.get("paid_checks_skipped")
                            else " — all of the budget used" if budget.get("exhausted") else "")
                         + (f"; {budget['unexpected_paid']} of them were requests the target should have rejected"
                            if budget.get("unexpected_paid") else "")
                         + _per_provider(budget))
        lines += ["", "Sources: `doc` — the provider's own document; `upstream` — the upstream model service's "
                  "documentation; `assumption` — chosen by qwen-image-mock. A failure of a `doc` rule means "
                  "the provider broke its documented contract (or its document is wrong); of an `upstream` "
                  "rule, that the provider differs from upstream's documentation; of an `assumption`, that "
                  "our assumption is wrong.", ""]
        for provider, block in data["providers"].items():
            s = block["summary"]
            lines += [f"## {provider}", "",
                      f"{s['pass']} passed, {s['fail']} failed, {s['not run']} not run"
                      + (f", {s['error']} errors" if s.get("error") else ""), "",
                      "| rule | source | result | what it checks |", "|---|---|---|---|"]
            for entry in block["rules"]:
                result = {"pass": "pass", "fail": "**FAIL**", "error": "**ERROR**"}.get(entry["outcome"], "not run")
                why = f" ({entry['reason']})" if entry.get("reason") and entry["outcome"] == "not run" else ""
                why += f" ({entry['note']})" if entry.get("note") and entry["outcome"] == "pass" else ""
                lines.append(f"| `{entry['field']}::{entry['keyword']}` | {entry['source']} | {result}{_md(why)} "
                             f"| {_md(entry['description'])} |")
            lines += _plan_markdown(provider, block.get("plan"))
            failures = [e for e in block["rules"] if e["outcome"] in ("fail", "error")]
            if failures:
                lines += ["", f"### Failures ({provider})", ""]
            for entry in failures:
                lines += [f"#### `{entry['id']}`", "",
                          f"- Rule: {entry['description']} (source: `{entry['source']}` — {entry['meaning']})",
                          "", "```text", entry["message"].strip()[:3000], "```", ""]
                for number, ev in enumerate(entry.get("evidence", []), 1):
                    lines += [f"Exchange {number}: `{ev['request']['method']} {ev['request']['url']}` → "
                              f"status **{ev['status']}**, request id `{ev['request_id']}`"
                              + (f", transport error: {ev['transport_error']}" if ev.get("transport_error") else ""),
                              "", "Request (credentials and image bytes redacted):", "", "```json",
                              json.dumps(ev["request"]["body"], indent=2, ensure_ascii=False)[:BODY_LIMIT], "```",
                              "", "Response body:", "", "```json",
                              json.dumps(ev["response_body"], indent=2, ensure_ascii=False)[:BODY_LIMIT]
                              if not isinstance(ev["response_body"], str) else ev["response_body"][:BODY_LIMIT],
                              "```", "", "Reproduce:", "", "```sh", ev["curl"], "```", ""]
            lines.append("")
        lines += ["## Not checked by this suite", ""] + [f"- {item}" for item in data["not_checked"]] + [""]
        return "\n".join(lines)


NOT_CHECKED = [
    "link expiry (24 h / 7 days): cannot be observed without waiting or a settable clock on the target",
    "content moderation errors, rate limiting (429), timeouts (408/504) and 5xx answers: a contract run "
    "cannot provoke them honestly",
    "the 10 MB image limit and the 20 MiB body limit as a real provider sets them: the suite checks the "
    "documented/assumed numbers only",
    "input images given as http(s) URLs on a real provider: only inline images are sent to non-mock targets",
    "strict-mode rules (x-strict, unknown fields refused, recommended image sides) unless --strict-mode is given",
]


def _per_provider(budget: dict[str, Any]) -> str:
    paid, planned = budget.get("paid_by_provider") or {}, budget.get("planned_by_provider") or {}
    if not paid:
        return ""
    return " (" + ", ".join(f"{name}: {count}, {planned.get(name, 0)} of them planned"
                            for name, count in paid.items()) + ")"


def _plan_markdown(provider: str, plan: dict[str, Any] | None) -> list[str]:
    """The planned requests of a provider: sent first, in this order; what each asks for,
    whether it was sent (and why not), and how the rules that checked its answer fared."""
    if not plan or not plan.get("items"):
        return []
    lines = ["", f"### Planned requests ({provider})", "",
             "Sent before any drawn example, in this order (a smaller --max-requests sends the first ones); "
             "every rule about a valid answer that applies checks each answer.", "",
             "| # | request | asks for | sent | checks |", "|---|---|---|---|---|"]
    for item in plan["items"]:
        if item["sent"]:
            checks = item.get("checks", {})
            failed = sorted(rule for rule, outcome in checks.items() if outcome == "fail")
            passed = sum(1 for outcome in checks.values() if outcome == "pass")
            sent = f"{item['status']}, request id `{item.get('request_id')}`"
            verdict = f"{passed} passed" + (f", **failed: {', '.join(f'`{r}`' for r in failed)}**" if failed else "")
        else:
            sent, verdict = f"**not sent**: {item['reason']}", "—"
        lines.append(f"| {item['order']} | `{item['name']}` | {_md('; '.join(item['covers']))} | {_md(sent)} "
                     f"| {_md(verdict)} |")
    if plan.get("left_out"):
        lines += ["", "Left out of the plan: " + "; ".join(plan["left_out"]) + "."]
    return lines


def _order(rule: Rule) -> int:
    return ["response", "schema", "semantic", "protocol", "mock", "recorded"].index(rule.kind)


def _count(entries: list[dict[str, Any]]) -> dict[str, int]:
    out = {"pass": 0, "fail": 0, "not run": 0, "error": 0}
    for entry in entries:
        out[entry["outcome"]] = out.get(entry["outcome"], 0) + 1
    return out


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

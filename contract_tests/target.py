"""The server under test: the mock in process (default), or a live server at a base URL.

Everything the suite sends goes through ``Target``, which

* keeps the log of exchanges of the current example (the evidence of a failure);
* on a live target, counts the requests that generate images (paid) against
  ``--max-requests`` and skips further paid checks once it is spent; paces every
  request to ``--rps``; and replays an identical request from a cache instead of paying
  for it twice (Hypothesis replays a failing example once more to report it, and every
  rule about a valid answer checks the same planned requests);
* keeps the images it downloaded, so that several rules checking one answer fetch each
  link once (a check that must fetch it again asks for a fresh download);
* records exchanges as fixtures with ``--record DIR`` (keys redacted, images reduced to
  sha256, byte count and dimensions); a planned request and its downloads go under
  ``DIR/<provider>/plan/<item>/``, named in the fixture (``plan_item``).

Nothing leaves the process without ``--base-url``: the in-process target is Starlette's
TestClient on the ASGI app, and links it returns are fetched through it; a link pointing
anywhere else is reported, not fetched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from .providers import PATHS
from .report import Exchange, redact, redact_headers, redact_url
from .semantics import describe_image_bytes

IN_PROCESS_BASE = "http://testserver"
DOWNLOADS_KEPT = 256  # downloaded images kept for other checks of the same answer
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def api_root(base_url: str) -> str:
    """The base a client library is given (``https://host/v1``, ``https://host/api/v1``) less
    the part that begins the providers' own paths: the suite appends whole paths."""
    parts = urlsplit(base_url)
    segments = [s for s in parts.path.split("/") if s]
    for start in range(len(segments)):
        tail = "/" + "/".join(segments[start:]) + "/"
        if any(path.startswith(tail) for path in PATHS.values()):
            return base_url[: len(base_url) - len(tail) + 1].rstrip("/")
    return base_url


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in LOOPBACK or host.startswith("127.")


@dataclass
class Budget:
    max_paid: int | None  # None: unlimited (the in-process mock)
    paid_sent: int = 0
    unexpected_paid: int = 0
    skipped: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)  # paid requests sent, per provider
    planned: dict[str, int] = field(default_factory=dict)  # of which planned requests, per provider

    @property
    def exhausted(self) -> bool:
        return self.max_paid is not None and self.paid_sent >= self.max_paid

    def count(self, provider: str, planned: bool) -> None:
        self.paid_sent += 1
        self.by_provider[provider] = self.by_provider.get(provider, 0) + 1
        if planned:
            self.planned[provider] = self.planned.get(provider, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"max_requests": self.max_paid, "paid_sent": self.paid_sent, "exhausted": self.exhausted
                or self.skipped > 0, "paid_checks_skipped": self.skipped, "unexpected_paid": self.unexpected_paid,
                "paid_by_provider": dict(self.by_provider), "planned_by_provider": dict(self.planned)}


class Evidence:
    """What a target keeps of the test being run: the exchanges of its current example (the
    evidence of a failure) and the planned request it checks, if any."""

    def __init__(self) -> None:
        self.current: list[Exchange] = []
        self.rule_id = ""
        self.plan_item: str | None = None

    def begin_test(self, rule_id: str) -> None:
        self.rule_id = rule_id
        self.current = []
        self.plan_item = None

    def begin_example(self, plan_item: str | None = None) -> None:
        self.current = []
        self.plan_item = plan_item


class Target(Evidence):
    def __init__(self, *, base_url: str | None, keys: dict[str, str | None], key_envs: dict[str, str],
                 max_requests: int, rps: float, timeout: float, record_dir: str | None,
                 app: Any = None) -> None:
        self.live = base_url is not None
        self.base_url = api_root((base_url or IN_PROCESS_BASE).rstrip("/"))
        self.keys = keys
        self.key_envs = key_envs
        self.budget = Budget(max_requests if self.live else None)
        self.min_interval = 1.0 / rps if (self.live and rps > 0) else 0.0
        self._last_sent = 0.0
        self._lock = threading.Lock()
        self.cache: dict[tuple, Exchange] = {}
        self.downloaded: OrderedDict[str, Exchange] = OrderedDict()
        super().__init__()
        self.record_dir = Path(record_dir) if record_dir else None
        self._recorded = 0
        if self.live:
            self.http = httpx.Client(base_url=self.base_url, timeout=timeout, follow_redirects=False)
            self.downloads = httpx.Client(timeout=timeout, follow_redirects=True)
        else:
            from starlette.testclient import TestClient

            self._test_client = TestClient(app, base_url=IN_PROCESS_BASE, raise_server_exceptions=False)
            self._test_client.__enter__()
            self.http = self._test_client
            self.downloads = self._test_client

    def close(self) -> None:
        if self.live:
            self.http.close()
            self.downloads.close()
        else:
            self._test_client.__exit__(None, None, None)

    @property
    def description(self) -> str:
        return self.base_url if self.live else "the mock, in process"

    # -- sending

    def auth_header(self, provider: str, auth: str | None = "key") -> dict[str, str]:
        if auth is None:
            return {}
        if auth == "key":
            return {"Authorization": f"Bearer {self.keys[provider]}"}
        return {"Authorization": auth}

    @property
    def budget_spent_reason(self) -> str:
        return (f"paid-request budget spent (--max-requests {self.budget.max_paid}): "
                "not sending more requests that generate images")

    def post(self, provider: str, body: Any = None, *, raw: bytes | None = None, auth: str | None = "key",
             paid: bool, path: str | None = None, fresh: bool = False, method: str = "POST",
             reuse: bool = False, skip_when_spent: bool = True) -> Exchange:
        """Send a request to the provider's edit route (or ``path``).

        ``paid``: a request meant to be accepted (it generates images); on a live target it
        is counted against the budget, and skipped when the budget is spent (``None`` is
        returned instead with ``skip_when_spent=False``). An identical request already
        answered is replayed from the cache on a live target (and in process with
        ``reuse``), spent budget or not, unless ``fresh``."""
        content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {**self.auth_header(provider, auth)}
        if content is not None:
            headers["Content-Type"] = "application/json"
        url = self.base_url + (path or PATHS[provider])
        key = (method, url, content, json.dumps(headers, sort_keys=True))
        if (self.live or reuse) and not fresh and key in self.cache:
            cached = self.cache[key]
            replay = Exchange(**{**cached.__dict__, "cached": True})
            self.current.append(replay)
            return replay
        if paid and self.budget.exhausted:
            if not skip_when_spent:
                return None  # type: ignore[return-value]
            self.budget.skipped += 1
            pytest.skip(self.budget_spent_reason)
        if not paid and self.budget.max_paid is not None and self.budget.unexpected_paid >= self.budget.max_paid:
            pytest.skip(f"the target accepted {self.budget.unexpected_paid} requests it should have refused (each "
                        "generated images): not sending more, to limit the cost (--max-requests)")
        exchange = Exchange(method, url, headers, content, key_env=self.key_envs.get(provider),
                            plan_item=self.plan_item)
        self._pace()
        started = time.monotonic()
        try:
            response = self.http.request(method, url, content=content, headers=headers)
            exchange.status = response.status_code
            exchange.response_headers = {k.lower(): v for k, v in response.headers.items()}
            exchange.response_body = response.content
        except httpx.HTTPError as error:
            exchange.error = f"{type(error).__name__}: {error}"
        exchange.elapsed = time.monotonic() - started
        if exchange.status == 200 and method == "POST" and path is None:
            exchange.paid = True
            if self.live:
                self.budget.count(provider, self.plan_item is not None)
                if not paid:
                    self.budget.unexpected_paid += 1
        if self.live or reuse:
            self.cache[key] = exchange
        self.current.append(exchange)
        self._record(provider, exchange)
        return exchange

    def download(self, provider: str, url: str, *, fresh: bool = False) -> Exchange:
        """Fetch an image link (no credentials are sent with it). A link fetched before is
        answered from what it gave then (``fresh``: fetched again)."""
        if not fresh and url in self.downloaded:
            replay = Exchange(**{**self.downloaded[url].__dict__, "cached": True})
            self.current.append(replay)
            return replay
        exchange = Exchange("GET", url, {}, None, plan_item=self.plan_item)
        self.current.append(exchange)
        if not self.live and not url.startswith(IN_PROCESS_BASE + "/"):
            exchange.error = (f"the link {redact_url(url)!r} is not served by the in-process target; "
                              "not fetched (without --base-url nothing leaves the process)")
            return exchange
        self._pace()
        started = time.monotonic()
        try:
            response = self.downloads.get(url)
            exchange.status = response.status_code
            exchange.response_headers = {k.lower(): v for k, v in response.headers.items()}
            exchange.response_body = response.content
        except (httpx.HTTPError, ValueError) as error:
            exchange.error = f"{type(error).__name__}: {error}"
        exchange.elapsed = time.monotonic() - started
        self._record(provider, exchange)
        if exchange.status == 200:
            self.downloaded[url] = exchange
            while len(self.downloaded) > DOWNLOADS_KEPT:
                self.downloaded.popitem(last=False)
        return exchange

    def get(self, path: str) -> Exchange:
        exchange = Exchange("GET", self.base_url + path, {}, None)
        self._pace()
        try:
            response = self.http.get(self.base_url + path)
            exchange.status = response.status_code
            exchange.response_headers = {k.lower(): v for k, v in response.headers.items()}
            exchange.response_body = response.content
        except httpx.HTTPError as error:
            exchange.error = f"{type(error).__name__}: {error}"
        return exchange

    def _pace(self) -> None:
        if not self.min_interval:
            return
        with self._lock:
            wait = self._last_sent + self.min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # rate limit towards a live target (--rps), not a readiness wait
            self._last_sent = time.monotonic()

    # -- recording

    def _record(self, provider: str, exchange: Exchange) -> None:
        if self.record_dir is None:
            return
        self._recorded += 1
        folder = (self.record_dir / provider / "plan" / folder_name(exchange.plan_item) if exchange.plan_item
                  else self.record_dir / provider / folder_name(self.rule_id))
        folder.mkdir(parents=True, exist_ok=True)
        content_type = exchange.response_headers.get("content-type", "")
        if content_type.startswith("image/") or (exchange.method == "GET" and exchange.response_body[:8].startswith(b"\x89PNG")):
            body: Any = {"<image>": describe_image_bytes(exchange.response_body)}
        else:
            try:
                body = redact(json.loads(exchange.response_body)) if exchange.response_body else None
            except (ValueError, UnicodeDecodeError):
                body = {"<bytes>": {"sha256": hashlib.sha256(exchange.response_body).hexdigest(),
                                    "bytes": len(exchange.response_body),
                                    "text": exchange.response_body[:500].decode("utf-8", "replace")}}
        try:
            request_body = redact(json.loads(exchange.request_body)) if exchange.request_body else None
        except (ValueError, UnicodeDecodeError):
            request_body = {"<bytes>": {"bytes": len(exchange.request_body or b""),
                                        "sha256": hashlib.sha256(exchange.request_body or b"").hexdigest()}}
        fixture = {
            "rule": self.rule_id,
            "plan_item": exchange.plan_item,
            "provider": provider,
            "recorded_at": int(time.time()),
            "target": "in-process mock" if not self.live else urlsplit(self.base_url).netloc,
            "request": {"method": exchange.method, "path": urlsplit(exchange.url).path,
                        "headers": redact_headers(exchange.request_headers), "body": request_body},
            "response": {
                "status": exchange.status,
                "headers": {k: v for k, v in exchange.response_headers.items()
                            if k in ("content-type", "x-request-id", "content-length")},
                "body": body,
                "transport_error": exchange.error,
                "elapsed_seconds": round(exchange.elapsed, 3),
            },
        }
        (folder / f"{self._recorded:04d}.json").write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")


def folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def b64_payload(value: str) -> bytes:
    """Bytes of a ``b64_json`` value: plain base64 or a ``data:...;base64,`` URI."""
    _, _, payload = value.rpartition("base64,") if value.startswith("data:") else ("", "", value)
    return base64.b64decode(payload, validate=True)

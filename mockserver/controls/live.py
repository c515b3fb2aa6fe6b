"""The dashboard's live stream, ``GET /__mock/events``: Server-Sent Events carrying exchanges as
the journal records them, and the scenarios' counters as they change.

Every promise is bounded, whatever the request rate and however slow the page:

- A subscriber queues nothing. The journal (bounded) is the buffer: a subscriber keeps the id
  of the last entry it looked at, is woken when one is recorded (with nobody subscribed,
  recording costs one test of an empty set), and then reads what is newer.
- Batches: at most one every ``BATCH_SECONDS``, carrying at most ``PAGE_CAP`` exchanges (the
  most recent; the batch counts the others as skipped). A page never has to take more than
  it would keep.
- A page that stops reading blocks only its own stream: its next batch is built when the
  last one has gone, from what the journal holds then; one that reads nothing for
  ``SEND_TIMEOUT_SECONDS`` is dropped.
- A new page gets the most recent ``PAGE_CAP`` matching exchanges, looking at no more than
  the ``SCAN_LIMIT`` most recent entries.

Events: ``hello`` (this worker, the bounds, the providers and faults), then ``batch``
(``{"exchanges": [...oldest first], "reset", "skipped", "missed", "cleared", "scenarios"?}``),
each with an id that a reconnecting ``EventSource`` sends back (``Last-Event-ID``) to resume
where it was; ``: ping`` comments keep an idle connection alive.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import anyio
import orjson
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from ..core.formats import whole_number
from ..core.settings import Settings
from ..http.responses import error_envelope
from ..http.server_marks import SERVER_STOPPING
from .exchange_view import ExchangeViewer
from .faults import FAULT_NAMES
from .filters import FilterError, Filters
from .gate import AdminError, AdminGate
from .journal import Journal, JournalEntry
from .scenarios import ScenarioBook

LOGGER = logging.getLogger("qwen_image_mock")

PAGE_CAP = 500
BATCH_SECONDS = 0.25
TICK_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 30.0
SCAN_LIMIT = 5000
SCENARIO_LIMIT = 200
# Views built between two turns of the event loop, so a large batch does not hold up requests.
VIEW_CHUNK = 64


def remaining(scenario: Any) -> int | None:
    return None if scenario.times is None else max(0, scenario.times - scenario.fired)


class LiveStream:
    """The ASGI endpoint; one ``Subscription`` per open page."""

    def __init__(self, *, journal: Journal | None, scenarios: ScenarioBook, gate: AdminGate,
                 viewer: ExchangeViewer, settings: Settings, refuse: Any) -> None:
        self.journal = journal
        self.scenarios = scenarios
        self.gate = gate
        self.viewer = viewer
        self.settings = settings
        self.refuse = refuse  # AdminError -> the admin endpoints' error response
        # Ids are this journal's: a page resuming on another worker, or after a restart, starts afresh.
        self.epoch = f"{os.getpid()}.{os.urandom(4).hex()}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        try:
            self.gate.check(connection)
            filters = Filters.parse(connection.query_params, self.scenarios.providers)
            since = self.resume_point(connection.headers.get("last-event-id"))
        except AdminError as error:
            await self.refuse(error)(scope, receive, send)
            return
        except FilterError as error:
            await error_envelope(400, "invalid_filter", f"{error}.")(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no")]})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        subscription = Subscription(self, filters, since)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self.watch_client, scope, receive, tasks.cancel_scope)
                await subscription.run(send)
        except* TimeoutError:
            pass  # the page read nothing for too long: drop it
        finally:
            subscription.close()
        with anyio.move_on_after(1):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def resume_point(self, last_event_id: str | None) -> int | None:
        """The entry id a reconnecting page saw last, if it saw it here."""
        if last_event_id is None:
            return None
        epoch, _, entry_id = last_event_id.rpartition(":")
        if epoch != self.epoch:
            return None
        return whole_number(entry_id)

    @staticmethod
    async def watch_client(scope: Scope, receive: Receive, cancel_scope: anyio.CancelScope) -> None:
        """End the stream when the page goes, or when the server stops (which wakes this read)."""
        while (await receive())["type"] != "http.disconnect" and SERVER_STOPPING not in scope["state"]:
            pass
        cancel_scope.cancel()

    def hello(self, filters: Filters) -> dict[str, Any]:
        journal = self.journal
        return {
            "worker": journal.worker if journal is not None else os.getpid(),
            "workers": self.settings.workers,
            "page_cap": PAGE_CAP,
            "batch_seconds": BATCH_SECONDS,
            "journal": None if journal is None else {
                "cap": journal.cap, "max_bytes": journal.max_bytes, "previews_max_bytes": journal.previews.max_bytes},
            "providers": sorted(self.scenarios.providers),
            "faults": sorted(FAULT_NAMES),
            "admin_token": not self.gate.is_open,
            "filters": filters.describe(),
        }


class Subscription:
    def __init__(self, live: LiveStream, filters: Filters, since: int | None) -> None:
        self.live = live
        self.filters = filters
        self.journal = live.journal
        self.cursor = since
        self.clears = self.journal.clears if self.journal is not None else 0
        self.woken = anyio.Event()
        self.stop_watching = self.journal.watch(self.wake) if self.journal is not None else (lambda: None)
        self.seen_scenarios: tuple[Any, ...] | None = None
        self.last_batch = 0.0
        self.last_sent = time.monotonic()

    def wake(self) -> None:
        self.woken.set()

    def close(self) -> None:
        self.stop_watching()

    async def run(self, send: Send) -> None:
        await self.emit(send, b"event: hello\ndata: " + orjson.dumps(self.live.hello(self.filters)) + b"\n\n")
        if self.cursor is None:
            await self.snapshot(send)
        else:
            await self.flush(send)  # what went by while the page was away
        while True:
            with anyio.move_on_after(TICK_SECONDS):
                await self.woken.wait()
            self.woken = anyio.Event()
            # At most one batch per BATCH_SECONDS: what arrives meanwhile joins it.
            delay = self.last_batch + BATCH_SECONDS - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            await self.flush(send)

    async def snapshot(self, send: Send) -> None:
        journal = self.journal
        entries = journal.latest(SCAN_LIMIT) if journal is not None else []
        self.cursor = journal.last_id if journal is not None else 0
        unsearched = max(0, journal.held - SCAN_LIMIT) if journal is not None else 0
        views, skipped = await self.views([e for e in entries if self.filters.admits(e)])
        await self.batch(send, views, reset=True, skipped=skipped + unsearched, scenarios=self.scenario_change())

    async def flush(self, send: Send) -> None:
        journal = self.journal
        cleared = missed = 0
        views: list[dict[str, Any]] = []
        skipped = 0
        if journal is not None:
            assert self.cursor is not None
            new = journal.newer_than(self.cursor)
            last = journal.last_id
            cleared = journal.clears - self.clears
            # Entries recorded since the last look but gone already (the journal's bounds).
            missed = 0 if cleared else max(0, last - self.cursor - len(new))
            self.cursor, self.clears = last, journal.clears
            views, skipped = await self.views([e for e in reversed(new) if self.filters.admits(e)])
        scenarios = self.scenario_change()
        if views or skipped or missed or cleared or scenarios is not None:
            await self.batch(send, views, reset=False, skipped=skipped, missed=missed, cleared=bool(cleared),
                             scenarios=scenarios)
        elif time.monotonic() - self.last_sent > HEARTBEAT_SECONDS:
            await self.emit(send, b": ping\n\n")

    async def views(self, candidates: list[JournalEntry]) -> tuple[list[dict[str, Any]], int]:
        """Views of the newest candidates (given newest first) that pass the free-text filter,
        at most ``PAGE_CAP``, oldest first; and how many candidates were left out."""
        views: list[dict[str, Any]] = []
        viewer, worker = self.live.viewer, self.journal.worker if self.journal is not None else os.getpid()
        examined = 0
        for entry in candidates:
            if len(views) == PAGE_CAP:
                break
            examined += 1
            try:
                view = viewer.view(entry, worker)
            except Exception:  # noqa: BLE001 -- a bug must not end every page's stream for good
                LOGGER.exception("qwen-image-mock could not show journal entry %s on the dashboard", entry.id)
                continue
            if self.filters.shows(view):
                views.append(view)
            if examined % VIEW_CHUNK == 0:
                await anyio.sleep(0)
        views.reverse()
        return views, len(candidates) - examined

    def scenario_change(self) -> dict[str, Any] | None:
        """The scenarios, if they (or their counters) changed since this page last had them."""
        scenarios = self.live.scenarios.select()
        seen = tuple((s.id, s.calls, s.fired) for s in scenarios)
        if seen == self.seen_scenarios:
            return None
        self.seen_scenarios = seen
        return {"total": len(scenarios),
                "shown": [{**s.describe(), "remaining": remaining(s)} for s in scenarios[:SCENARIO_LIMIT]]}

    async def batch(self, send: Send, views: list[dict[str, Any]], *, reset: bool, skipped: int = 0,
                    missed: int = 0, cleared: bool = False, scenarios: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"exchanges": views, "reset": reset, "skipped": skipped, "missed": missed,
                                   "cleared": cleared, "last_id": self.cursor}
        if scenarios is not None:
            payload["scenarios"] = scenarios
        event = f"id: {self.live.epoch}:{self.cursor}\nevent: batch\ndata: ".encode()
        await self.emit(send, event + orjson.dumps(payload) + b"\n\n")
        self.last_batch = time.monotonic()

    async def emit(self, send: Send, data: bytes) -> None:
        with anyio.fail_after(SEND_TIMEOUT_SECONDS):
            await send({"type": "http.response.body", "body": data, "more_body": True})
        self.last_sent = time.monotonic()

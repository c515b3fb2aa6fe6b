"""``/__mock/``: scenarios and the request journal, for tests and for people.

    POST   /__mock/scenarios        add one scenario (a JSON object) or several (a list)
    GET    /__mock/scenarios        list them, with their counters (?session=, ?api_key=)
    DELETE /__mock/scenarios        delete them (all, or ?session=, ?api_key=)
    DELETE /__mock/scenarios/{id}   delete one
    GET    /__mock/requests         the journal, oldest first (?provider=, ?session=, ?limit=)
    DELETE /__mock/requests         empty it

Off with ``--disable-admin`` (then 404, like any unknown path); behind ``--admin-token`` a
request without the token gets 401 and one with a wrong token 403, for a mock reachable
beyond localhost (``gate.py``; the dashboard's session cookie counts as the token). The
dashboard (``dashboard.py``) calls these same endpoints.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.errors import ApiError
from ..core.formats import whole_number
from ..core.settings import Settings
from ..http.body import read_body
from ..http.responses import error_envelope, header_list, json_response
from .gate import AdminError, AdminGate
from .journal import Journal
from .scenarios import MAX_SCENARIOS, ScenarioBook, ScenarioError

# Scenarios are small: a thousand of them fit in a tenth of this.
ADMIN_BODY_LIMIT = 1024 * 1024


__all__ = ["Admin", "AdminError"]


class Admin:
    def __init__(self, settings: Settings, journal: Journal | None, scenarios: ScenarioBook,
                 gate: AdminGate | None = None) -> None:
        self.settings = settings
        self.journal = journal
        self.scenarios = scenarios
        self.gate = gate or AdminGate(settings.admin_token)
        # With several workers, the front layer (control.py) names the worker on every answer.
        self.headers = {"x-mock-worker": str(os.getpid())} if settings.workers == 1 else {}
        if settings.workers > 1:
            self.headers["x-mock-warnings"] = header_list([
                f"this mock runs {settings.workers} workers, each with its own scenarios and journal; "
                "this answer is from one of them (run one worker to test with scenarios and the journal)"
            ])

    def routes(self) -> list[Route]:
        return [
            Route("/__mock/scenarios", self.endpoint(self.scenarios_list), methods=["GET"]),
            Route("/__mock/scenarios", self.endpoint(self.scenarios_add), methods=["POST"]),
            Route("/__mock/scenarios", self.endpoint(self.scenarios_clear), methods=["DELETE"]),
            Route("/__mock/scenarios/{scenario_id}", self.endpoint(self.scenario_delete), methods=["DELETE"]),
            Route("/__mock/requests", self.endpoint(self.requests_list), methods=["GET"]),
            Route("/__mock/requests", self.endpoint(self.requests_clear), methods=["DELETE"]),
        ]

    def endpoint(self, handler):
        async def guarded(request: Request) -> Response:
            try:
                self.gate.check(request, request.method)
                status, payload = await handler(request)
            except AdminError as error:
                return self.refusal(error)
            return json_response({**payload, "worker": os.getpid()}, status_code=status, headers=self.headers)

        return guarded

    def refusal(self, error: AdminError) -> Response:
        response = error_envelope(error.status, error.code, error.message)
        if error.status == 401:
            response.headers["www-authenticate"] = "Bearer"
        response.headers.update(self.headers)
        return response

    def changed(self) -> None:
        """Scenarios changed: whoever watches (the dashboard) looks now, not at its next tick."""
        if self.journal is not None:
            self.journal.wake()

    async def scenarios_list(self, request: Request) -> tuple[int, dict[str, Any]]:
        params = request.query_params
        chosen = self.scenarios.select(session=params.get("session"), api_key=params.get("api_key"))
        return 200, {"scenarios": [s.describe() for s in chosen]}

    async def scenarios_add(self, request: Request) -> tuple[int, dict[str, Any]]:
        try:
            raw = await read_body(request.scope, request.receive, request.headers, ADMIN_BODY_LIMIT)
        except ApiError as error:
            status = {"body_too_large": 413, "timeout": 408}.get(error.kind, 400)
            raise AdminError(status, error.kind, error.message) from None
        try:
            spec = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise AdminError(400, "invalid_scenario", f"The body is not valid JSON: {error}.") from None
        specs = spec if isinstance(spec, list) else [spec]
        room = self.scenarios.room
        if len(specs) > room:
            # Refused before a single one is built.
            raise AdminError(400, "invalid_scenario",
                             f"The mock holds at most {MAX_SCENARIOS} scenarios and has room for {room} more; "
                             f"this body has {len(specs)}. Delete some first.")
        try:
            added = self.scenarios.add(*specs)
        except ScenarioError as error:
            raise AdminError(400, "invalid_scenario", f"Invalid scenario: {error}.") from None
        self.changed()
        return 201, {"scenarios": [s.describe() for s in added]}

    async def scenarios_clear(self, request: Request) -> tuple[int, dict[str, Any]]:
        params = request.query_params
        deleted = self.scenarios.clear(session=params.get("session"), api_key=params.get("api_key"))
        self.changed()
        return 200, {"deleted": deleted}

    async def scenario_delete(self, request: Request) -> tuple[int, dict[str, Any]]:
        scenario_id = request.path_params["scenario_id"]
        if not self.scenarios.remove(scenario_id):
            raise AdminError(404, "not_found", f"No scenario {scenario_id!r}.")
        self.changed()
        return 200, {"deleted": 1}

    async def requests_list(self, request: Request) -> tuple[int, dict[str, Any]]:
        params = request.query_params
        provider = params.get("provider")
        if provider is not None and provider not in self.scenarios.providers:
            raise AdminError(400, "invalid_filter",
                             f"provider must be one of {', '.join(sorted(self.scenarios.providers))}.")
        limit_text = params.get("limit")
        limit = None if limit_text is None else whole_number(limit_text)
        if limit_text is not None and limit is None:
            raise AdminError(400, "invalid_filter", "limit must be a whole number written with the digits 0-9.")
        if self.journal is None:
            return 200, {"requests": [], "cap": 0, "dropped": 0}
        entries = self.journal.entries(provider=provider, session=params.get("session"), limit=limit)
        return 200, {"requests": entries, "cap": self.journal.cap, "dropped": self.journal.dropped}

    async def requests_clear(self, request: Request) -> tuple[int, dict[str, Any]]:
        return 200, {"deleted": self.journal.clear() if self.journal is not None else 0}

"""The composition root: the Starlette application, built from the registered providers, the
HTTP core, the images layer and the test controls. Only here do the layers meet."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .cassettes.replay import Replay
from .controls.admin import Admin
from .controls.controller import MockControl
from .controls.dashboard import Dashboard
from .controls.faults import Latency
from .controls.journal import Journal
from .controls.scenarios import Chaos, ScenarioBook
from .core.errors import ApiError
from .core.settings import Settings
from .http.endpoint import EditEndpoint
from .http.files import FileEndpoint
from .http.front import Front
from .http.links import LinkSigner
from .http.models import ModelListing
from .http.openapi import build_openapi
from .http.responses import error_envelope, error_response
from .images.outputs import ImageFactory
from .providers import PROVIDERS
from .providers.api import Provider

HTTP_ERROR_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class MockStarlette(Starlette):
    """Starlette with a front layer outside everything, even its error middleware, so that
    a 500 carries the request id and network faults reach the server's own ``send``."""

    def __init__(self, *, front: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        self.front = front
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return self.front(super().build_middleware_stack())


class EditFirst:
    """Edit requests straight to their endpoint; everything else through Starlette's routing
    and error handling (the endpoint handles its own errors)."""

    def __init__(self, endpoints: dict[str, ASGIApp], app: ASGIApp) -> None:
        self.endpoints = endpoints
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope.get("method") == "POST" else None
        await (endpoint or self.app)(scope, receive, send)


def owner(providers: list[Provider], path: str) -> Provider | None:
    """The provider whose paths ``path`` is among: its endpoint (or a path below it), else
    the first whose mount (``/v1/``, ``/api/v1/``) it falls under. Unknown paths there answer
    in that provider's envelope."""
    return next((p for p in providers if path.startswith(p.path)), None) or next(
        (p for p in providers if path.startswith(p.mount)), None)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    providers = [provider_class(settings) for provider_class in PROVIDERS]
    factory = ImageFactory(settings.render_cache_bytes, settings.fetch_hosts, settings.fetch_timeout)
    signer = LinkSigner(settings.url_secret)
    openapi = json.dumps(build_openapi(providers)).encode()

    async def openapi_document(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = HTTP_ERROR_KINDS.get(exc.status_code)
        provider = owner(providers, request.url.path)
        if kind == "method_not_allowed" and provider is not None and provider.path == request.url.path:
            message = f"{request.method} is not allowed on {provider.path}; use POST."
        elif kind == "not_found":
            message = f"No route for {request.method} {request.url.path}."
        else:
            message = str(exc.detail)
        if kind is None or provider is None:
            response = error_envelope(exc.status_code, kind or "error", message)
        else:
            response = error_response(provider, ApiError(kind, message), request.state.request_id)
        response.headers.update(exc.headers or {})
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        # Reached only through a bug; Starlette logs the traceback.
        message = "The mock failed on this request; this is a bug in qwen-image-mock."
        provider = owner(providers, request.url.path)
        if provider is None:
            return error_envelope(500, "internal_error", message)
        return error_response(provider, ApiError("internal_error", message), request.state.request_id)

    edit_endpoints = {provider.path: EditEndpoint(provider, settings, factory, signer) for provider in providers}
    # --replay: a cassette answers the edit endpoints first (cassettes/replay.py), under the
    # test controls; nothing changes on the path of a request without it.
    replay = Replay.load(settings, providers) if settings.replay else None
    if replay is not None:
        edit_endpoints = replay.endpoints(edit_endpoints)
    routes = [Route(path, endpoint, methods=["POST"]) for path, endpoint in edit_endpoints.items()]
    routes += [Route(provider.models_path, ModelListing(provider, settings).handle, methods=["GET"])
               for provider in providers if provider.models_path]
    routes += [
        Route("/files/{token}.png", FileEndpoint({p.name: p for p in providers}, settings, factory, signer).handle,
              methods=["GET", "HEAD"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    # Test controls (faults, scenarios, chaos, latency, journal): see controls/. The journal
    # is kept only when someone can read it.
    journal = (Journal(settings.journal_cap, settings.journal_max_bytes)
               if settings.journal_cap and not settings.disable_admin else None)
    scenarios = ScenarioBook(provider.name for provider in providers)
    if not settings.disable_admin:
        admin = Admin(settings, journal, scenarios)
        routes += admin.routes()
        routes += Dashboard(settings=settings, journal=journal, scenarios=scenarios, admin=admin,
                           providers=providers, factory=factory, signer=signer,
                           recorded_pictures=replay.picture if replay is not None else None).routes()
    if replay is not None:
        routes += replay.routes(None if settings.disable_admin else admin.endpoint)
    chaos = Chaos(settings.chaos_rate, settings.chaos_seed, settings.chaos_faults)
    latency = Latency(*settings.latency, seed=settings.latency_seed)
    # With several workers each keeps its own journal and scenarios; saying which worker
    # answered makes that visible.
    worker = [(b"x-mock-worker", str(os.getpid()).encode())] if settings.workers > 1 else []

    def front(app: ASGIApp) -> Front:
        app = EditFirst(edit_endpoints, app)
        controls = MockControl(app, providers={p.path: p for p in providers}, settings=settings, journal=journal,
                               scenarios=scenarios, chaos=chaos, latency=latency)
        return Front(app, controls, worker)

    app = MockStarlette(
        front=front, routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error}
    )
    # /v1/images/edits/ is not the endpoint: a JSON 404 says so, a redirect would not.
    app.router.redirect_slashes = False
    app.state.journal = journal
    app.state.scenarios = scenarios
    app.state.replay = replay
    return app


"""The Starlette application: one edit route per provider, image links, and the
documents a user or a tool asks for."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .admin import Admin
from .control import MockControl
from .endpoint import EditEndpoint
from .errors import ApiError
from .faults import Latency
from .files import FileEndpoint
from .journal import Journal
from .links import LinkSigner
from .network import MockStarlette
from .openapi import build_openapi
from .outputs import ImageFactory
from .providers import PROVIDERS, Provider
from .responses import error_envelope
from .scenarios import Chaos, ScenarioBook
from .settings import Settings

HTTP_ERROR_KINDS = {404: "not_found", 405: "method_not_allowed"}


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    providers = [provider_class(settings) for provider_class in PROVIDERS]
    by_path: dict[str, Provider] = {provider.path: provider for provider in providers}
    factory = ImageFactory(settings.render_cache_bytes, settings.fetch_hosts, settings.fetch_timeout)
    signer = LinkSigner(settings.url_secret)
    openapi = json.dumps(build_openapi(providers)).encode()

    async def openapi_document(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = HTTP_ERROR_KINDS.get(exc.status_code)
        provider = by_path.get(request.url.path)
        if kind == "method_not_allowed" and provider is not None:
            message = f"{request.method} is not allowed on {provider.path}; use POST."
            response = provider.error_response(ApiError(kind, message), request.state.request_id)
        else:
            response = error_envelope(exc.status_code, kind or "error", exc.detail if kind is None else
                                      f"No route for {request.method} {request.url.path}.")
        response.headers.update(exc.headers or {})
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        # Reached only through a bug; Starlette logs the traceback.
        message = "The mock failed on this request; this is a bug in qwen-image-mock."
        provider = by_path.get(request.url.path)
        if provider is None:
            return error_envelope(500, "internal_error", message)
        return provider.error_response(ApiError("internal_error", message), request.state.request_id)

    routes = [
        Route(provider.path, EditEndpoint(provider, settings, factory, signer), methods=["POST"])
        for provider in providers
    ]
    routes += [
        Route("/files/{token}.png", FileEndpoint({p.name: p for p in providers}, settings, factory, signer).handle,
              methods=["GET", "HEAD"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    # Test controls (faults, scenarios, chaos, latency, journal): see control.py. The journal
    # is kept only when someone can read it.
    journal = (Journal(settings.journal_cap, settings.journal_max_bytes)
               if settings.journal_cap and not settings.disable_admin else None)
    scenarios = ScenarioBook(provider.name for provider in providers)
    if not settings.disable_admin:
        routes += Admin(settings, journal, scenarios).routes()
    chaos = Chaos(settings.chaos_rate, settings.chaos_seed, settings.chaos_faults)
    latency = Latency(*settings.latency, seed=settings.latency_seed)

    def front(app: ASGIApp) -> MockControl:
        return MockControl(app, providers=by_path, settings=settings, journal=journal, scenarios=scenarios,
                           chaos=chaos, latency=latency)

    app = MockStarlette(
        front=front, routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error}
    )
    # /v1/images/edits/ is not the endpoint: a JSON 404 says so, a redirect would not.
    app.router.redirect_slashes = False
    app.state.journal = journal
    app.state.scenarios = scenarios
    return app

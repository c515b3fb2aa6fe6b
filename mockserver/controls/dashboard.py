"""The dashboard: ``GET /__mock/``, a live page of what the application sent and got, as pictures.

    GET    /__mock/                  the page (behind --admin-token without a session: the login page, 401)
    GET    /__mock/static/{name}     its script and style sheet (code, no data: served to anyone)
    POST   /__mock/session           log in: the admin token in a header, answered with a session cookie
    DELETE /__mock/session           log out
    GET    /__mock/events            the live stream (``live.py``)
    GET    /__mock/files/{token}.png an output link's image, drawn again from the link, not journaled
    GET    /__mock/files/replay/{name} with --replay: a replayed link's recorded image, not journaled
    GET    /__mock, GET /            redirect to /__mock/

The page is plain HTML, CSS and JavaScript shipped in the package (``static/``), read once at
start-up and served from memory: nothing to build, no library, no CDN, so it works offline and
under a Content-Security-Policy that allows nothing but this origin. Everything under
``/__mock/`` goes with ``--disable-admin``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import resources
from typing import NamedTuple

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..core.settings import Settings
from ..http.links import LinkError, LinkSigner
from ..http.responses import not_found
from ..images.outputs import ImageFactory
from ..providers.api import Provider
from .admin import Admin
from .exchange_view import ExchangeViewer
from .gate import AdminError, AdminGate
from .journal import Journal
from .live import LiveStream
from .scenarios import ScenarioBook

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
# Nothing but this origin: the page shows what clients sent (prompts, headers), as text only.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"content-security-policy": POLICY, "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer", "x-frame-options": "DENY", "cache-control": "no-cache"}


class Asset(NamedTuple):
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """The files of ``static/``, read once."""
    assets = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in MEDIA_TYPES:
            body = item.read_bytes()
            assets[item.name] = Asset(body, MEDIA_TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return assets


class Dashboard:
    def __init__(self, *, settings: Settings, journal: Journal | None, scenarios: ScenarioBook, admin: Admin,
                 providers: list[Provider], factory: ImageFactory, signer: LinkSigner,
                 recorded_pictures: Callable[[str], tuple[bytes, str] | None] | None = None) -> None:
        self.settings = settings
        # --replay: a replayed answer's links name recorded images (name -> bytes, media type).
        self.recorded_pictures = recorded_pictures
        self.admin = admin
        self.gate: AdminGate = admin.gate
        self.providers = {provider.name: provider for provider in providers}
        self.factory = factory
        self.signer = signer
        self.assets = load_assets()
        viewer = ExchangeViewer(providers, journal.previews if journal is not None else None)
        self.live = LiveStream(journal=journal, scenarios=scenarios, gate=self.gate, viewer=viewer,
                               settings=settings, refuse=admin.refusal)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.to_page, methods=["GET"]),
            Route("/__mock", self.to_page, methods=["GET"]),
            Route("/__mock/", self.page, methods=["GET"]),
            Route("/__mock/static/{name}", self.static, methods=["GET"]),
            Route("/__mock/session", self.login, methods=["POST"]),
            Route("/__mock/session", self.logout, methods=["DELETE"]),
            Route("/__mock/events", self.live, methods=["GET"]),
            Route("/__mock/files/{token}.png", self.image, methods=["GET"]),
        ] + ([Route("/__mock/files/replay/{name}", self.recorded_image, methods=["GET"])]
             if self.recorded_pictures is not None else [])

    async def to_page(self, request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/__mock/", status_code=307)

    def asset(self, request: Request, name: str, status: int = 200) -> Response:
        asset = self.assets[name]
        if status == 200 and request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers={"etag": asset.etag})
        headers = {**PAGE_HEADERS, "etag": asset.etag}
        return Response(asset.body, status_code=status, media_type=asset.media_type, headers=headers)

    async def page(self, request: Request) -> Response:
        if self.gate.is_open or self.gate.has_session(request):
            return self.asset(request, "index.html")
        given = self.gate.given_token(request)
        if given is not None and self.gate.token_matches(given):
            return self.asset(request, "index.html")
        # The login page: no data, only a form asking for the token.
        response = self.asset(request, "login.html", status=401)
        response.headers["www-authenticate"] = "Bearer"
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.assets or name.endswith(".html"):
            return not_found(f"No dashboard file {name[:80]!r}.")
        return self.asset(request, name)

    async def login(self, request: Request) -> Response:
        """The token, sent once in a header, for a session cookie (see ``gate.py``)."""
        if not self.gate.is_open:
            given = self.gate.given_token(request)
            try:
                if given is None:
                    raise AdminError(401, "admin_token_required",
                                     "Log in with the admin token in a header: Authorization: Bearer <token>.")
                if not self.gate.token_matches(given):
                    raise AdminError(403, "admin_token_invalid", "Wrong admin token.")
            except AdminError as error:
                return self.admin.refusal(error)
        response = Response(status_code=204, headers={"cache-control": "no-store"})
        if not self.gate.is_open:
            response.headers["set-cookie"] = self.gate.session_cookie(request)
        return response

    async def logout(self, request: Request) -> Response:
        response = Response(status_code=204, headers={"cache-control": "no-store"})
        if not self.gate.is_open:
            response.headers["set-cookie"] = self.gate.session_cookie(request, end=True)
        return response

    async def recorded_image(self, request: Request) -> Response:
        """A replayed answer's recorded image for the page, not journaled, expired or not."""
        try:
            self.gate.check(request)
        except AdminError as error:
            return self.admin.refusal(error)
        assert self.recorded_pictures is not None
        found = self.recorded_pictures(request.path_params["name"])
        if found is None:
            return not_found("No such recorded image.")
        data, media_type = found
        return Response(data, media_type=media_type,
                        headers={"cache-control": "private, max-age=86400", "x-content-type-options": "nosniff"})

    async def image(self, request: Request) -> Response:
        """An output link's image for the page: checked as ``/files/`` checks it, but not
        journaled (the page's own loads would drown what the application did) and shown
        even once the link has expired (the page shows what was answered then)."""
        try:
            self.gate.check(request)
        except AdminError as error:
            return self.admin.refusal(error)
        try:
            link = self.signer.verify(request.path_params["token"])
        except LinkError as error:
            return not_found(f"No such image: {error}.")
        provider = self.providers.get(link.provider)
        if provider is None or not provider.output_bounds.admits(link.spec.width, link.spec.height):
            return not_found("No such image.")
        png = await self.factory.fetch_png(link.spec)
        return Response(png, media_type="image/png",
                        headers={"cache-control": "private, max-age=86400", "x-content-type-options": "nosniff"})

"""``GET /files/{token}.png``: the images behind the links the mock hands out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..core.errors import ApiError
from ..core.settings import Settings
from ..images.outputs import ImageFactory
from ..providers.api import Provider
from .links import LinkError, LinkSigner
from .responses import error_response, not_found


class FileEndpoint:
    def __init__(
        self, providers: dict[str, Provider], settings: Settings, factory: ImageFactory, signer: LinkSigner
    ) -> None:
        self.providers = providers
        self.settings = settings
        self.factory = factory
        self.signer = signer

    async def handle(self, request: Request) -> Response:
        try:
            link = self.signer.verify(request.path_params["token"])
        except LinkError as error:
            return not_found(f"No such image: {error}.")
        provider = self.providers.get(link.provider)
        if provider is None:
            return not_found("No such image.")
        # The default key is public, so a forged link must not be able to ask for a huge
        # image: none is larger than the largest the provider answers with.
        if not provider.output_bounds.admits(link.spec.width, link.spec.height):
            return not_found("No such image: its size is out of range.")
        remaining = link.expires - self.settings.now()
        if remaining < 0:
            # Expired links of the real services answer 403, like an expired signed URL.
            return error_response(provider, ApiError("forbidden", "This image link has expired."),
                                  request.state.request_id)
        png = await self.factory.fetch_png(link.spec)
        return Response(png, media_type="image/png", headers={"cache-control": f"private, max-age={remaining}"})


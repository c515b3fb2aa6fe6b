"""A provider's documented model listing (``GET /v1/models`` for modelverse): the models its
request schema accepts, in the OpenAI shape, so that OpenAI-compatible clients that list
models work. Authenticated like the edit endpoint."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..core.errors import ApiError
from ..core.settings import Settings
from ..providers.api import Provider
from .auth import authenticate
from .responses import error_response, json_response


class ModelListing:
    def __init__(self, provider: Provider, settings: Settings) -> None:
        self.provider = provider
        self.settings = settings
        self.body = {"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": provider.name} for model in provider.models()
        ]}

    async def handle(self, request: Request) -> Response:
        try:
            authenticate(request.headers.get("authorization"), self.settings.api_keys)
        except ApiError as error:
            return error_response(self.provider, error, request.state.request_id)
        return json_response(self.body)

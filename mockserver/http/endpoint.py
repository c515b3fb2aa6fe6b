"""The path of an edit request through the mock, top to bottom: authenticate, parse,
validate against the provider's schema, normalise into a provider-neutral edit job,
produce the images, and shape the provider's response."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..core.errors import ApiError
from ..core.job import EditJob
from ..core.settings import Settings
from ..images.outputs import ImageFactory, JobResult
from ..providers.api import Provider, ResponseContext
from .auth import authenticate
from .body import parse_json_object, read_body
from .links import Link, LinkSigner
from .responses import error_response, header_list, json_response


class EditEndpoint:
    """An ASGI app rather than a request-response function: Starlette wraps functions in a
    second exception-handling layer, which costs more than all of parsing the request."""

    def __init__(self, provider: Provider, settings: Settings, factory: ImageFactory, signer: LinkSigner) -> None:
        self.provider = provider
        self.settings = settings
        self.factory = factory
        self.signer = signer
        # The provider's documented lifetime, unless the user set one.
        self.link_lifetime = provider.link_lifetime if settings.url_lifetime is None else settings.url_lifetime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        request_id: str = request.scope["state"]["request_id"]
        try:
            headers = request.headers
            authenticate(headers.get("authorization"), self.settings.api_keys)
            self.provider.check_request(headers)
            raw = await read_body(request, self.settings.max_body_bytes)
            body = parse_json_object(raw, headers, self.provider.body_hint)
            warnings = self.validate(body)
            job = self.provider.to_job(body, headers)
            result = await self.factory.complete(job, self.settings.strict)
        except ApiError as error:
            return error_response(self.provider, error, request_id)

        created = self.settings.now()
        urls = self.image_urls(request, job, result, created) if result.images[0].png is None else []
        context = ResponseContext(request_id=request_id, created=created, image_urls=urls)
        payload = self.provider.success_body(job, result, context)
        headers = {"x-mock-seed": str(result.seed)}
        if warnings or result.warnings:
            headers["x-mock-warnings"] = header_list(warnings + result.warnings)
        return json_response(payload, headers=headers)

    def image_urls(self, request: Request, job: EditJob, result: JobResult, created: int) -> list[str]:
        """The mock's own links to the job's images, valid for the provider's lifetime."""
        link = Link(result.images[0].spec, self.provider.name, created + self.link_lifetime, count=len(result.images))
        base_url = self.settings.public_base_url or origin(request)
        return [f"{base_url}/files/{token}.png" for token in self.signer.tokens(link)]

    def validate(self, body: dict[str, Any]) -> list[str]:
        """Raise on the first violation of the provider's schema; return strict mode's
        objections as warnings when not in strict mode."""
        violations, warnings = self.provider.request_schema.check(body, self.settings.strict)
        if violations:
            first = violations[0]
            raise ApiError(
                first.error_kind, first.describe(), param=first.param, violations=[v.describe() for v in violations]
            )
        return [warning.describe() for warning in warnings]


def origin(request: Request) -> str:
    """Where the client reached the mock; cheaper than Starlette's ``request.base_url``."""
    scope = request.scope
    host = request.headers.get("host") or "{}:{}".format(*scope["server"])
    return f"{scope['scheme']}://{host}{scope.get('root_path', '')}"

"""The path of an edit request through the mock, top to bottom: authenticate, parse,
validate against the provider's schema, normalise into a provider-neutral edit job,
produce the images, and shape the provider's response."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from ..core.errors import ApiError
from ..core.settings import Settings
from ..images.outputs import ImageFactory, JobResult
from ..providers.api import Provider, ResponseContext
from .auth import authenticate
from .body import parse_json_object, read_body
from .links import Link, LinkSigner
from .responses import error_parts, header_list

LOGGER = logging.getLogger("qwen_image_mock")


class EditEndpoint:
    """A raw ASGI app: it reads the scope and sends its two messages itself. On the path every
    edit request takes, Starlette's request and response objects and its exception layers
    cost more than all the mock's own work; the app dispatches here first (``app.py``)."""

    def __init__(self, provider: Provider, settings: Settings, factory: ImageFactory, signer: LinkSigner) -> None:
        self.provider = provider
        self.settings = settings
        self.factory = factory
        self.signer = signer
        # The provider's documented lifetime, unless the user set one.
        self.link_lifetime = provider.link_lifetime if settings.url_lifetime is None else settings.url_lifetime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id: str = scope["state"]["request_id"]
        try:
            body, status, headers = await self.answer(scope, receive, request_id)
        except Exception:
            # A bug: logged with its traceback, answered like any error of the provider's.
            LOGGER.exception("qwen-image-mock failed on %s %s", scope["method"], scope["path"])
            message = "The mock failed on this request; this is a bug in qwen-image-mock."
            body, status, error_headers, _ = error_parts(self.provider, ApiError("internal_error", message), request_id)
            headers = {**error_headers}
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw_headers += [(name.encode(), value.encode()) for name, value in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    async def answer(self, scope: Scope, receive: Receive, request_id: str) -> tuple[bytes, int, dict[str, str]]:
        headers = Headers(scope=scope)
        try:
            authenticate(headers.get("authorization"), self.settings.api_keys)
            self.provider.check_request(headers)
            raw = await read_body(scope, receive, headers, self.settings.max_body_bytes)
            body = parse_json_object(raw, headers, self.provider.body_hint)
            warnings = self.validate(body)
            job = self.provider.to_job(body, headers)
            result = await self.factory.complete(job, self.settings.strict)
        except ApiError as error:
            content, status, error_headers, _ = error_parts(self.provider, error, request_id)
            return content, status, error_headers

        created = self.settings.now()
        urls = self.image_urls(scope, headers, result, created) if result.images[0].png is None else []
        context = ResponseContext(request_id=request_id, created=created, image_urls=urls)
        payload = self.provider.success_body(job, result, context)
        answer_headers = {"x-mock-seed": str(result.seed)}
        if warnings or result.warnings:
            answer_headers["x-mock-warnings"] = header_list(warnings + result.warnings)
        return orjson.dumps(payload), 200, answer_headers

    def image_urls(self, scope: Scope, headers: Headers, result: JobResult, created: int) -> list[str]:
        """The mock's own links to the job's images, valid for the provider's lifetime."""
        link = Link(result.images[0].spec, self.provider.name, created + self.link_lifetime, count=len(result.images))
        base_url = self.settings.public_base_url or origin(scope, headers)
        return [f"{base_url}/files/{token}.png" for token in self.signer.tokens(link)]

    def validate(self, body: dict[str, Any]) -> list[str]:
        """Raise on the first violation of the provider's schema; return strict mode's
        objections as warnings when not in strict mode."""
        violations, warnings = self.provider.request_schema.check(body, self.settings.strict)
        if violations:
            first = violations[0]
            raise ApiError(
                first.error_kind, first.describe(), param=first.param, violations=[v.describe() for v in violations],
                rule=first.keyword, source=first.source,
            )
        return [warning.describe() for warning in warnings]


def origin(scope: Scope, headers: Headers) -> str:
    """Where the client reached the mock; cheaper than Starlette's ``request.base_url``."""
    host = headers.get("host") or "{}:{}".format(*scope["server"])
    return f"{scope['scheme']}://{host}{scope.get('root_path', '')}"

"""What every provider module supplies: its route, its schemas, and the translation between
its own request, response and error shapes and the provider-neutral edit job."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.responses import Response

from ..errors import ApiError
from ..images import ImageRules
from ..job import EditJob, OutputBounds
from ..outputs import JobResult, OutputImage
from ..responses import header_list, json_response
from ..schemas import RequestSchema, load_schema
from ..settings import Settings


@dataclass(frozen=True)
class ResponseContext:
    """What the shaping of a success response needs besides the job and its images."""

    request_id: str
    created: int
    image_urls: list[str]  # the mock's links to the images, by index; empty when they are inline


class Provider:
    name: ClassVar[str]
    path: ClassVar[str]
    # Set by each provider from its request schema: the x-image keyword, and the largest
    # images it answers with.
    image_rules: ImageRules
    output_bounds: OutputBounds
    # What goes before the base64 of a b64_json image.
    b64_prefix: str = ""

    def __init__(self, settings: Settings) -> None:
        self.request_schema = RequestSchema(load_schema(self.name, "request"))
        self.response_schema = load_schema(self.name, "response")
        self.error_schema = load_schema(self.name, "error")
        self.error_catalogue: dict[str, dict[str, Any]] = self.error_schema["x-errors"]
        self.link_lifetime: int = self.response_schema["$defs"]["image"]["properties"]["url"]["x-expires-after"]
        # How to send a JSON body, for those who sent something else.
        self.body_hint: str = self.request_schema.schema["x-body-hint"]

    def to_job(self, body: dict[str, Any]) -> EditJob:
        raise NotImplementedError

    def success_body(self, job: EditJob, result: JobResult, context: ResponseContext) -> dict[str, Any]:
        raise NotImplementedError

    def image_item(self, image: OutputImage, context: ResponseContext) -> dict[str, str]:
        """``{"b64_json": ...}`` when the image is inline, else ``{"url": ...}``."""
        if image.png is not None:
            return {"b64_json": self.b64_prefix + base64.b64encode(image.png).decode()}
        return {"url": context.image_urls[image.spec.index]}

    def error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        """The OpenAI-style envelope both providers use; ``param`` differs between them."""
        entry = self.error_catalogue[error.kind]
        return {
            "error": {
                "message": error.message,
                "type": entry["type"],
                "param": self.error_param(error, request_id),
                "code": entry["code"],
            }
        }

    def error_param(self, error: ApiError, request_id: str) -> str | None:
        raise NotImplementedError

    def error_status(self, kind: str) -> int:
        return self.error_catalogue[kind]["status"]

    def error_response(self, error: ApiError, request_id: str) -> Response:
        headers = dict(error.headers)
        if error.violations:
            headers["x-mock-violations"] = header_list(error.violations)
        return json_response(self.error_body(error, request_id), self.error_status(error.kind), headers)


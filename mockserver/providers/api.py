"""The provider API: what a provider module supplies, and all it may use of the rest of the mock.

A provider is one module here (a ``Provider`` subclass) and its folder in ``schemas/``; its
module imports nothing but this one (``make test`` checks it with import-linter). What can
be data is read from its schema files: the request, response and error schemas, the error
catalogue (``x-errors``) and envelope (``x-envelope``), which error kind its ``timeout`` is
(``x-timeout``), its link lifetime (``x-expires-after``), its own settings (``x-settings``),
how to send a JSON body (``x-body-hint``). What is translation is code: ``to_job`` (its request
to the provider-neutral ``EditJob``) and ``success_body`` (the job's images in its shape).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..core.errors import ApiError, invalid_parameter
from ..core.job import EditJob
from ..core.references import ImageReference, ImageRules, parse_reference
from ..core.schemas import RequestSchema, load_schema, objects_in
from ..core.settings import Settings
from ..core.sizes import FromInput, OutputBounds, SizeRules, parse_size
from ..images.outputs import JobResult, OutputImage

__all__ = [
    "ApiError", "EditJob", "FromInput", "ImageReference", "ImageRules", "JobResult", "OutputBounds", "OutputImage",
    "Provider", "ResponseContext", "Settings", "SizeRules", "invalid_parameter", "message_content", "parse_reference",
    "parse_size",
]


@dataclass(frozen=True)
class ResponseContext:
    """What the shaping of a success response needs besides the job and its images."""

    request_id: str
    created: int
    image_urls: list[str]  # the mock's links to the images, by index; empty when they are inline


class Provider:
    name: ClassVar[str]
    path: ClassVar[str]  # the edit endpoint (POST)
    # Unknown paths under this prefix answer in this provider's envelope (the first provider
    # registered wins where prefixes are shared).
    mount: ClassVar[str]
    # Where the contract kit looks for a real provider's key.
    api_key_env: ClassVar[str]
    # What a client library appends its paths to (OpenAI's base_url, DashScope's
    # base_http_api_url), for the testing harness.
    client_base_path: ClassVar[str]
    # The documented model listing, answered from the request schema's model enum.
    models_path: ClassVar[str | None] = None
    # Request headers (lower-case) that change the answer, as HTTP's ``Vary`` names them: a
    # recorded exchange matches a request only if these are the same (see ``cassettes/``).
    vary: ClassVar[tuple[str, ...]] = ()
    # Set by each provider from its request schema: the x-image keyword, and the largest
    # images it answers with.
    image_rules: ImageRules
    output_bounds: OutputBounds

    def __init__(self, settings: Settings) -> None:
        self.request_schema = RequestSchema(load_schema(self.name, "request"))
        self.response_schema = load_schema(self.name, "response")
        self.error_schema = load_schema(self.name, "error")
        self.error_catalogue: dict[str, dict[str, Any]] = self.error_schema["x-errors"]
        self.envelope: dict[str, Any] = self.error_schema["x-envelope"]
        self.timeout_kind: str = self.error_schema["x-timeout"]
        self.link_lifetime: int = next(
            node["x-expires-after"] for node in objects_in(self.response_schema) if "x-expires-after" in node)
        self.body_hint: str = self.request_schema.schema["x-body-hint"]
        self.options: Mapping[str, Any] = {
            name.removeprefix(f"{self.name}_"): value for name, value in settings.options.items()
            if name.startswith(f"{self.name}_")
        }

    def check_request(self, headers: Mapping[str, str]) -> None:
        """Refuse, with ``ApiError``, what the headers alone make unacceptable; called once the
        caller is authenticated, before the body is read."""

    def to_job(self, body: dict[str, Any], headers: Mapping[str, str]) -> EditJob:
        """The provider-neutral job a valid request body asks for; ``ApiError`` for what the
        schema cannot say (a size out of range, an unsupported reference...)."""
        raise NotImplementedError

    def success_body(self, job: EditJob, result: JobResult, context: ResponseContext) -> dict[str, Any]:
        raise NotImplementedError

    def models(self) -> list[str]:
        """The models the request schema accepts."""
        return next(node["enum"] for node in objects_in(self.request_schema.property("#/properties/model"))
                    if "enum" in node)

    @staticmethod
    def inline_or_link(image: OutputImage, context: ResponseContext, b64_prefix: str = "") -> tuple[str, str]:
        """``("b64", base64)`` when the image travels in the answer, else ``("url", link)``."""
        if image.png is not None:
            return "b64", b64_prefix + base64.b64encode(image.png).decode()
        return "url", context.image_urls[image.spec.index]

    def error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        """The provider's error envelope (``x-envelope``: ``"{placeholder}"`` strings filled in)."""
        entry = self.error_catalogue[error.kind]
        values = {"message": error.message, "type": entry.get("type"), "code": entry["code"],
                  "param": error.param, "request_id": request_id}
        return _filled(self.envelope, values)

    def error_status(self, kind: str) -> int:
        return self.error_catalogue[kind]["status"]


def message_content(body: dict[str, Any], rules: ImageRules) -> tuple[str, tuple[ImageReference, ...]]:
    """The text and the image references of a DashScope-style body's one message
    (``input.messages[0].content``: image items and one text item, as its schema checked)."""
    content = body["input"]["messages"][0]["content"]
    prompt = ""
    images = []
    for index, item in enumerate(content):
        if "text" in item:
            prompt = item["text"]
        elif "image" in item:
            images.append(parse_reference(item["image"], f"input.messages[0].content[{index}].image", rules))
    return prompt, tuple(images)


def _filled(template: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(template, dict):
        return {key: _filled(value, values) for key, value in template.items()}
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return values[template[1:-1]]
    return template

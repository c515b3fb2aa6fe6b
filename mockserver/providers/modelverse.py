"""modelverse: ``POST /v1/images/generations``, OpenAI-compatible, model
Qwen/Qwen-Image-Edit. The OpenAI SDK sends the edit fields through ``extra_body``."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..images import ImageRules, parse_reference
from ..job import EditJob, OutputBounds, SameAsInput
from ..outputs import JobResult
from ..settings import Settings
from .base import Provider, ResponseContext

RANDOM_SEED = -1


class Modelverse(Provider):
    name = "modelverse"
    path = "/v1/images/generations"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.image_rules = ImageRules.from_schema(self.request_schema.property("#/properties/image")["x-image"])
        rule = self.request_schema.schema["x-output-size"]
        self.output_bounds = OutputBounds(rule["maxPixels"], rule["maxAspectRatio"])
        self.output_size = SameAsInput(tuple(rule["forUrlInput"]), self.output_bounds)
        self.b64_prefix = "data:image/png;base64," if settings.modelverse_b64_style == "data-uri" else ""

    def to_job(self, body: dict[str, Any]) -> EditJob:
        options = {**self.request_schema.defaults, **body}
        seed = int(options["seed"])
        return EditJob(
            model=body["model"],
            prompt=body["prompt"],
            images=(parse_reference(body["image"], "image", self.image_rules),),
            image_rules=self.image_rules,
            n=int(options["n"]),
            size=self.output_size,
            response_format=options["response_format"],
            negative_prompt=body.get("negative_prompt"),
            seed=None if seed == RANDOM_SEED else seed,
            options={
                "strength": float(options["strength"]),
                "steps": int(options["steps"]),
                "guidance_scale": float(options["guidance_scale"]),
            },
        )

    def success_body(self, job: EditJob, result: JobResult, context: ResponseContext) -> dict[str, Any]:
        data = [self.image_item(image, context) for image in result.images]
        return {"created": context.created, "data": data, "usage": {"input_tokens_details": {}}}

    def error_param(self, error: ApiError, request_id: str) -> str:
        # The documented envelope carries the request id in ``param``.
        return request_id

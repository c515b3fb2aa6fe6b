"""modelverse: ``POST /v1/images/generations``, OpenAI-compatible, model
Qwen/Qwen-Image-Edit. The OpenAI SDK sends the edit fields through ``extra_body``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .api import (
    EditJob,
    FromInput,
    JobResult,
    OutputBounds,
    Provider,
    ResponseContext,
    Settings,
    parse_reference,
)

RANDOM_SEED = -1


class Modelverse(Provider):
    name = "modelverse"
    path = "/v1/images/generations"
    mount = "/v1/"
    api_key_env = "MODELVERSE_API_KEY"
    client_base_path = "/v1"
    models_path = "/v1/models"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.image_rules = self.request_schema.image_rules("#/properties/image")
        rule = self.request_schema.schema["x-output-size"]
        self.output_bounds = OutputBounds(rule["maxPixels"], rule["maxAspectRatio"])
        self.output_size = FromInput(tuple(rule["forUrlInput"]), self.output_bounds)
        self.b64_prefix = "data:image/png;base64," if self.options["b64_style"] == "data-uri" else ""
        self.defaults = self.request_schema.defaults_at("#")

    def to_job(self, body: dict[str, Any], headers: Mapping[str, str]) -> EditJob:
        options = {**self.defaults, **body}
        seed = int(options["seed"])
        return EditJob(
            model=body["model"],
            prompt=body["prompt"],
            images=(parse_reference(body["image"], "image", self.image_rules),),
            image_rules=self.image_rules,
            n=int(options["n"]),
            size=self.output_size,
            inline_output=options["response_format"] == "b64_json",
            negative_prompt=body.get("negative_prompt"),
            seed=None if seed == RANDOM_SEED else seed,
            options={
                "strength": float(options["strength"]),
                "steps": int(options["steps"]),
                "guidance_scale": float(options["guidance_scale"]),
            },
        )

    def success_body(self, job: EditJob, result: JobResult, context: ResponseContext) -> dict[str, Any]:
        data = []
        for image in result.images:
            kind, value = self.inline_or_link(image, context, self.b64_prefix)
            data.append({"b64_json" if kind == "b64" else "url": value})
        return {"created": context.created, "data": data, "usage": {"input_tokens_details": {}}}

"""DashScope's native API: ``POST /api/v1/services/aigc/multimodal-generation/generation``,
the upstream both gateways front, as the ``dashscope`` SDK calls it. A DashScope-style
``input.messages`` body with the model's ``parameters``; each model has its own rules for
``n`` and ``size`` and its own default output size (the request schema's ``allOf``, one
branch per family of models); all ``n`` images come back in one choice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .api import (
    ApiError,
    EditJob,
    FromInput,
    JobResult,
    OutputBounds,
    Provider,
    ResponseContext,
    Settings,
    SizeRules,
    message_content,
    parse_size,
)

ASYNC_HEADER = "x-dashscope-async"
# What DashScope answers a synchronous-only model called asynchronously (reported by SDK
# users for the qwen-image models: HTTP 403, AccessDenied; undocumented, so an assumption).
ASYNC_REFUSAL = "current user api does not support asynchronous calls"


class DashScope(Provider):
    name = "dashscope"
    path = "/api/v1/services/aigc/multimodal-generation/generation"
    mount = "/api/v1/"
    api_key_env = "DASHSCOPE_API_KEY"
    client_base_path = "/api/v1"
    vary = (ASYNC_HEADER,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.image_rules = self.request_schema.image_rules("#/$defs/image")
        self.defaults = self.request_schema.defaults_at("#/properties/parameters")
        self.size_rules: dict[str, SizeRules] = {}
        self.output_sizes: dict[str, FromInput] = {}
        for branch in self.request_schema.schema["allOf"]:
            condition = branch["if"]["properties"]["model"]
            then = branch["then"]
            size = then["properties"]["parameters"]["properties"].get("size", {})
            rule = then["x-output-size"]
            output = FromInput(
                tuple(rule["forUrlInput"]),
                OutputBounds(rule["maxPixels"], rule.get("maxAspectRatio"), rule.get("minPixels", 1),
                             rule.get("minSide", 1), rule.get("maxSide")),
                last=rule["fromInput"] == "last",
                area=rule.get("area"),
            )
            for model in condition.get("enum", [condition.get("const")]):
                if "x-size" in size:
                    self.size_rules[model] = SizeRules.from_schema(size["x-size"])
                self.output_sizes[model] = output
        # Explicit 2.0-series sizes take any aspect ratio: only the pixel total bounds outputs.
        self.output_bounds = OutputBounds(max(
            [out.bounds.max_pixels for out in self.output_sizes.values()]
            + [rules.max_pixels or rules.max_side ** 2 for rules in self.size_rules.values()]))

    def check_request(self, headers: Mapping[str, str]) -> None:
        if headers.get(ASYNC_HEADER, "").strip().lower() == "enable":
            raise ApiError("forbidden", ASYNC_REFUSAL)

    def to_job(self, body: dict[str, Any], headers: Mapping[str, str]) -> EditJob:
        model = body["model"]
        parameters = {**self.defaults, **body.get("parameters", {})}
        prompt, images = message_content(body, self.image_rules)
        size = (parse_size(parameters["size"], "parameters.size", self.size_rules[model])
                if "size" in parameters else self.output_sizes[model])
        return EditJob(
            model=model,
            prompt=prompt,
            images=images,
            image_rules=self.image_rules,
            n=int(parameters["n"]),
            size=size,
            inline_output=False,
            negative_prompt=parameters.get("negative_prompt"),
            seed=parameters.get("seed"),
            options={"watermark": parameters["watermark"], "prompt_extend": parameters["prompt_extend"]},
        )

    def success_body(self, job: EditJob, result: JobResult, context: ResponseContext) -> dict[str, Any]:
        content = [{"image": self.inline_or_link(image, context)[1]} for image in result.images]
        return {
            "output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": content}}]},
            "usage": {"width": result.width, "height": result.height, "image_count": len(result.images)},
            "request_id": context.request_id,
        }

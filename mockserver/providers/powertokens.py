"""powertokens: ``POST /v1/images/edits``, model qwen-image-2.0-pro, a DashScope-style
``input.messages`` body whose top-level parameters the gateway maps to upstream
``parameters``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .api import (
    EditJob,
    JobResult,
    OutputBounds,
    Provider,
    ResponseContext,
    Settings,
    SizeRules,
    message_content,
    parse_size,
)


class Powertokens(Provider):
    name = "powertokens"
    path = "/v1/images/edits"
    mount = "/v1/"
    api_key_env = "POWERTOKENS_API_KEY"
    client_base_path = "/v1"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.image_rules = self.request_schema.image_rules("#/$defs/image")
        self.size_rules = SizeRules.from_schema(self.request_schema.property("#/properties/size")["x-size"])
        # Sizes are explicit (or the default), within x-size's pixel range.
        self.output_bounds = OutputBounds(self.size_rules.max_pixels)
        self.defaults = self.request_schema.defaults_at("#")

    def to_job(self, body: dict[str, Any], headers: Mapping[str, str]) -> EditJob:
        options = {**self.defaults, **body}
        prompt, images = message_content(body, self.image_rules)
        return EditJob(
            model=body["model"],
            prompt=prompt,
            images=images,
            image_rules=self.image_rules,
            n=int(options["n"]),
            size=parse_size(options["size"], "size", self.size_rules),
            inline_output=options["response_format"] == "b64_json",
            negative_prompt=body.get("negative_prompt"),
            seed=int(body["seed"]) if "seed" in body else None,
            options={"watermark": options["watermark"], "prompt_extend": options["prompt_extend"]},
        )

    def success_body(self, job: EditJob, result: JobResult, context: ResponseContext) -> dict[str, Any]:
        data = []
        revised = revised_prompt(job.prompt) if job.options["prompt_extend"] else None
        for image in result.images:
            kind, value = self.inline_or_link(image, context)
            item = {"b64_json" if kind == "b64" else "url": value}
            if revised is not None:
                item["revised_prompt"] = revised
            data.append(item)
        # What the gateway passes upstream as ``parameters``, size normalised to W*H.
        upstream = {"n": job.n, "size": f"{result.width}*{result.height}", **job.options}
        if job.negative_prompt is not None:
            upstream["negative_prompt"] = job.negative_prompt
        if job.seed is not None:
            upstream["seed"] = job.seed
        return {
            "created": context.created,
            "data": data,
            "metadata": {
                "request_id": context.request_id,
                "model": job.model,
                "parameters": upstream,
                "effective_seed": result.seed,
            },
        }


def revised_prompt(prompt: str) -> str:
    # A stand-in for upstream's prompt rewriting: recognisably derived from the prompt.
    return f"{prompt.rstrip('. ')}. High quality, detailed, natural lighting, coherent composition."

"""An OpenAPI 3.1 document assembled from the files in ``schemas/``, for tools such as
Schemathesis and Prism.

Two rules of the request schemas are beyond JSON Schema and live in ``x-`` keywords the
tools ignore: ``x-image`` (an image reference that must hold a real image) and ``x-size``
(``W*H`` within a total-pixel range). Here a node carrying one of them also gets a ``format``
naming the rule (the ``x-`` keyword stays, with its parameters), so that a tool can be
taught to generate values the mock accepts: ``mockserver/testing/schemathesis_hooks.py`` registers
Schemathesis strategies for both formats, reading their parameters from the document. The
mock's own validation uses the schema files, never this document, and asserts no format.
"""

from __future__ import annotations

import copy
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..core.schemas import objects_in
from ..providers.api import Provider

SCHEMA_FILES = ("request", "response", "error")

# The JSON Schema ``format`` given to a node carrying each x- keyword.
IMAGE_FORMAT = "qwen-image-reference"
SIZE_FORMAT = "qwen-size"
RULE_FORMATS = {"x-image": IMAGE_FORMAT, "x-size": SIZE_FORMAT}


def package_version() -> str:
    try:
        return version("qwen-image-mock")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def _component(provider: Provider, kind: str) -> str:
    return f"{provider.name.capitalize()}{kind.capitalize()}"


def _embed(schema: dict[str, Any], component: str) -> dict[str, Any]:
    """The schema with its ``$defs`` references pointing into ``components``: without
    its ``$id`` an embedded ``#/...`` reference is resolved against the OpenAPI document."""
    embedded = copy.deepcopy(schema)
    embedded.pop("$id", None)
    embedded.pop("$schema", None)
    for node in objects_in(embedded):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            node["$ref"] = f"#/components/schemas/{component}/{ref[2:]}"
        for keyword, name in RULE_FORMATS.items():
            if isinstance(node.get(keyword), dict):
                node.setdefault("format", name)
    return embedded


def _json(component: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}


def build_openapi(providers: list[Provider]) -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for provider in providers:
        schemas = {
            "request": provider.request_schema.schema,
            "response": provider.response_schema,
            "error": provider.error_schema,
        }
        for kind in SCHEMA_FILES:
            name = _component(provider, kind)
            components[name] = _embed(schemas[kind], name)
        error = _json(_component(provider, "error"))
        statuses = sorted({entry["status"] for entry in provider.error_catalogue.values()})
        responses: dict[str, Any] = {"200": {"description": "The generated images.", "content": _json(_component(provider, "response"))}}
        responses.update({str(status): {"description": f"Error {status}.", "content": error} for status in statuses})
        paths[provider.path] = {
            "post": {
                "operationId": f"{provider.name}_edit",
                "summary": schemas["request"].get("title", provider.name),
                "description": schemas["request"].get("description", ""),
                "tags": [provider.name],
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": _json(_component(provider, "request"))},
                "responses": responses,
            }
        }
    paths["/files/{token}.png"] = {
        "get": {
            "operationId": "get_image",
            "summary": "An image behind a link the mock returned.",
            "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The PNG.", "content": {"image/png": {}}},
                "403": {"description": "The link has expired."},
                "404": {"description": "Not a link this mock issued."},
            },
        }
    }
    paths["/healthz"] = {
        "get": {"operationId": "healthz", "responses": {"200": {"description": "The mock is up."}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qwen-image-mock",
            "version": package_version(),
            "description": (
                f"Offline mock of hosted Qwen image-editing APIs: {', '.join(p.name for p in providers)}. "
                f"Format `{IMAGE_FORMAT}`: an image reference whose rules (URL schemes, inline "
                "encodings, byte and pixel limits, image formats) are in the node's `x-image`; inline "
                f"data must be a real image. Format `{SIZE_FORMAT}`: `W*H` or `WxH` whose total pixels "
                "are within the node's `x-size` range. For Schemathesis, the hooks module "
                "`mockserver.testing.schemathesis_hooks` generates values of both."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

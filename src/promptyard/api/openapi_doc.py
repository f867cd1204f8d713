"""The OpenAPI document tells the truth about errors: every operation answers 4xx in one shape,
{"error": {"code", "message", "details"}}, never flask-openapi3's default list of ValidationErrorModel.

Applied to the generated document as a whole, so an endpoint added later is described the same way untouched.
"""

from __future__ import annotations

from typing import Any

from flask_openapi3 import OpenAPI

ERROR_SCHEMA_NAME = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR_SCHEMA_NAME,
    "type": "object",
    "description": "Every error promptyard answers, whatever the endpoint.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "A stable machine-readable code, e.g. validation_error."},
                "message": {"type": "string", "description": "A sentence for people."},
                "details": {"type": "object", "description": "Structured specifics (fields, limits, ids)."},
            },
        }
    },
}

# What any operation may answer besides its success: bad JSON, auth, a missing resource, a conflict, a body too
# large, invalid input, a rate limit or a busy server, a backend that cannot be reached.
ERROR_STATUSES = {
    "400": "Malformed request (the body is not a JSON object)",
    "401": "An API key is required or is invalid",
    "403": "The key's role is not enough",
    "404": "No such resource or endpoint",
    "405": "Method not allowed",
    "409": "Conflicts with the current state",
    "413": "The body is too large",
    "415": "Unsupported media type",
    "422": "The request is invalid",
    "429": "Too many requests (see Retry-After)",
    "503": "A backend is unavailable",
}


def describe_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Give every operation the error responses in the real shape, and a 200 where it declares no success."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("ValidationErrorModel", None)
    schemas[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation and "operationId" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            if not any(str(status).startswith("2") for status in responses):
                responses["200"] = {"description": "OK"}
            for status, description in ERROR_STATUSES.items():
                responses[status] = {"description": description,
                                     "content": {"application/json": {"schema": reference}}}
    return spec


def init_app(app: OpenAPI) -> None:
    """Rewrite the document each time flask-openapi3 generates it."""
    generate = app.generate_spec_json

    def generate_spec_json() -> None:
        generate()
        describe_errors(app.spec_json)

    app.generate_spec_json = generate_spec_json  # type: ignore[method-assign]

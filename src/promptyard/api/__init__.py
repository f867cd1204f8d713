"""The HTTP layer: Flask blueprints that parse requests (pydantic), check auth and call services."""

from __future__ import annotations

from flask import redirect
from flask_openapi3 import OpenAPI

import importlib

from promptyard.api.errors import register_error_handlers

# Each module exposes `api`, an APIBlueprint.
BLUEPRINT_MODULES = (
    "promptyard.api.health",
    "promptyard.api.keys",
    "promptyard.api.prompts",
    "promptyard.api.experiments",
    "promptyard.api.models",
    "promptyard.api.executions",
    "promptyard.api.openai_compat",
    "promptyard.api.evals",
    "promptyard.api.trainings",
)


def init_app(app: OpenAPI) -> None:
    from promptyard.api import admission, auth, guards, limits, openapi_doc

    register_error_handlers(app)
    openapi_doc.init_app(app)
    # Limits run before auth so that guessing keys is throttled too.
    limits.init_app(app)
    auth.init_app(app)
    # After auth: a caller without a key learns nothing about which ids or names exist.
    guards.init_app(app)
    # Last: only a request that will run takes a place among the threads writes and generations may hold.
    admission.init_app(app)
    for module_name in BLUEPRINT_MODULES:
        app.register_api(importlib.import_module(module_name).api)

    @app.get("/api/docs", doc_ui=False)
    def api_docs():
        return redirect("/api/swagger", code=302)

"""The application factory: nothing happens at import time; create_app builds everything."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import Info, OpenAPI

from promptyard.config import default_database_url, defaults, from_environment, instance_home


def create_app(config: dict[str, Any] | None = None) -> OpenAPI:
    """Build the Flask app from defaults, the instance folder's config.py, the environment and `config`."""
    config = dict(config or {})
    home = instance_home(config)
    home.mkdir(parents=True, exist_ok=True)

    from promptyard.api.errors import validation_error_callback

    app = OpenAPI(
        "promptyard",
        info=Info(title="promptyard", version=_version(), description="A workbench for code LLMs."),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        doc_prefix="/api",
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_callback=validation_error_callback,
        instance_path=str(home),
        instance_relative_config=True,
    )
    # Later sources win: defaults, instance/config.py, the environment, the caller's config.
    app.config.from_mapping(defaults())
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_mapping(from_environment())
    app.config.from_mapping(config)
    app.config["PROMPTYARD_HOME"] = str(home)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = app.config.get("DATABASE_URL") or default_database_url(str(home))
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A server-side database can restart under us; a local SQLite file cannot, and a ping per request would
        # be a round trip for nothing on the cached path.
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["PROMPTYARD_MAX_BODY_BYTES"])
    app.json.sort_keys = False

    from promptyard import db, migrations
    from promptyard.api import init_app as init_api

    from promptyard.monitoring import http as monitoring

    db.init_app(app)
    migrations.init_app(app)
    # First, so that its before_request starts the clock and names the request before auth or limits answer.
    monitoring.init_app(app)
    init_api(app)
    _init_extensions(app)
    return app


def _init_extensions(app: OpenAPI) -> None:
    """The resource layers, each with its own init_app: plugins, loaded models, execution, jobs."""
    from promptyard import execution, jobs, models
    from promptyard.plugins import registry

    for extension in (registry, models, execution, jobs):
        extension.init_app(app)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("promptyard")
    except PackageNotFoundError:
        return "0.0.0"

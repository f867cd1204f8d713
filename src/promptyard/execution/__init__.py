"""Execution: the pipeline from request to recorded result, with its response cache and per-model queue."""

from __future__ import annotations

from flask import Flask

from promptyard.execution.cache import create_cache
from promptyard.execution.queue import ExecutionQueue


def init_app(app: Flask) -> None:
    """Put the response cache and the generation queue on the app."""
    app.extensions["promptyard.execution.cache"] = create_cache(app.config)
    app.extensions["promptyard.execution.queue"] = ExecutionQueue(
        concurrency=int(app.config.get("PROMPTYARD_QUEUE_CONCURRENCY") or 1),
        size=int(app.config.get("PROMPTYARD_QUEUE_SIZE") if app.config.get("PROMPTYARD_QUEUE_SIZE") is not None
                 else 16),
    )

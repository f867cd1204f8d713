"""Liveness: the one endpoint that never needs a key."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

api = APIBlueprint("health", __name__, abp_tags=[Tag(name="service")])


@api.get("/healthz", security=[])
def healthz():
    """Liveness check."""
    return {"status": "ok"}

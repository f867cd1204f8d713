"""Plugins and registered models: list, register, show, change, remove, load, unload and pull."""

from __future__ import annotations

from typing import Any, Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field, NonNegativeFloat

from promptyard.api.auth import require_role
from promptyard.api.bodies import Body, DbCount
from promptyard.models import changes, pulls, service
from promptyard.plugins.registry import get_registry

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"

api = APIBlueprint("models", __name__, url_prefix="/api/v1", abp_tags=[Tag(name="models")],
                   abp_security=[{"bearer": []}])


class Pricing(Body):
    input_per_1k: NonNegativeFloat | None = Field(None, description="Price per 1K input tokens (API backends).")
    output_per_1k: NonNegativeFloat | None = Field(None, description="Price per 1K output tokens (API backends).")
    gpu_hour: NonNegativeFloat | None = Field(None, description="Price per GPU-hour of generation (self-hosted).")


class ModelCreate(Body):
    name: str = Field(pattern=NAME_PATTERN, description="Unique name, like a prompt name.")
    plugin: str = Field(min_length=1, max_length=100, description="Installed plugin that runs it (see /plugins).")
    source: str = Field(min_length=1, max_length=500, description="Hub id, local folder or base URL.")
    quantization: Literal["4bit", "8bit"] | None = Field(None, description="bitsandbytes quantization (CUDA only).")
    revision: str | None = Field(None, max_length=100, description="Hub revision (branch, tag or commit).")
    params: dict[str, Any] = Field(default_factory=dict, description="Default generation params.")
    pricing: Pricing | None = Field(None, description="Per-1K-token prices or a GPU-hour price.")
    options: dict[str, Any] = Field(default_factory=dict, description="Plugin options, e.g. trust_remote_code.")
    description: str = Field("", max_length=2000)


class ModelUpdate(Body):
    """Only the fields given change; `null` clears quantization or revision."""

    source: str | None = Field(None, min_length=1, max_length=500, description="Hub id, local folder or base URL.")
    quantization: Literal["4bit", "8bit"] | None = Field(None, description="bitsandbytes quantization, or null.")
    revision: str | None = Field(None, max_length=100, description="Hub revision, or null.")
    params: dict[str, Any] | None = Field(None, description="Default generation params (replaces them).")
    pricing: Pricing | None = Field(None, description="Prices (replace them; {} for none).")
    options: dict[str, Any] | None = Field(None, description="Plugin options (replace them).")
    description: str | None = Field(None, max_length=2000)

    def changes(self) -> dict[str, Any]:
        """The fields the body names (null only where null means something)."""
        given = {key: getattr(self, key) for key in self.model_fields_set}
        for key in ("source", "params", "options", "description"):
            if key in given and given[key] is None:
                given.pop(key)
        if "pricing" in given:
            given["pricing"] = given["pricing"].model_dump(exclude_none=True) if given["pricing"] else {}
        return given


class ModelPath(BaseModel):
    name: str


class ListQuery(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    offset: DbCount = 0


class ModelListQuery(ListQuery):
    archived: bool = Field(False, description="Include archived models.")


class RemoveQuery(BaseModel):
    archive: bool = Field(False, description="Archive a model executions still name, instead of refusing (409).")


@api.get("/plugins")
def list_plugins(query: ListQuery):
    """Installed plugins with their kind, version, status and load error."""
    items = get_registry().list()
    return {"items": items[query.offset:query.offset + query.limit], "total": len(items)}


@api.get("/models")
def list_models(query: ModelListQuery):
    """Registered models and presets, each with its status (archived ones only when asked)."""
    items = service.list_models(include_archived=query.archived)
    return {"items": items[query.offset:query.offset + query.limit], "total": len(items)}


@api.post("/models", responses={201: None})
@require_role("admin")
def register_model(body: ModelCreate):
    """Register a model with the plugin that serves it."""
    row = service.register_model(
        body.name, body.plugin, body.source,
        quantization=body.quantization,
        params=body.params,
        pricing=body.pricing.model_dump(exclude_none=True) if body.pricing else None,
        options=body.options,
        revision=body.revision,
        description=body.description,
    )
    return service.model_to_dict(row), 201


@api.get("/models/<name>")
def show_model(path: ModelPath):
    """One registered model with its status."""
    return service.model_to_dict(service.get_model(path.name))


@api.patch("/models/<name>")
@require_role("admin")
def update_model(path: ModelPath, body: ModelUpdate):
    """Fix a registered model: source, revision, quantization, params, pricing, options or description."""
    return service.model_to_dict(changes.update_model(path.name, body.changes()))


@api.delete("/models/<name>")
@require_role("admin")
def remove_model(path: ModelPath, query: RemoveQuery):
    """Delete a model; one that executions name is refused (409) unless `archive=true` (hidden, history kept)."""
    return changes.remove_model(path.name, archive=query.archive)


@api.post("/models/<name>/load")
@require_role("admin")
def load_model(path: ModelPath):
    """Load a model into memory now (otherwise the first request loads it)."""
    service.load_model(path.name)
    return service.model_to_dict(service.get_model(path.name))


@api.post("/models/<name>/unload")
@require_role("admin")
def unload_model(path: ModelPath):
    """Free a loaded model's memory."""
    service.unload_model(path.name)
    return service.model_to_dict(service.get_model(path.name))


@api.post("/models/<name>/pull", responses={202: None})
@require_role("admin")
def pull_model(path: ModelPath):
    """Download a model's weights in the background; follow it with GET (progress is kept per server process)."""
    return pulls.start_pull(path.name), 202


@api.get("/models/<name>/pull")
def pull_status(path: ModelPath):
    """The model's latest pull: state (idle, running, succeeded, failed), bytes so far and the error if it failed."""
    return pulls.pull_status(path.name)

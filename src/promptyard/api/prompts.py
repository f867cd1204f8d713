"""Prompts: the versioned library, its versions, labels, rendering, import and export."""

from __future__ import annotations

from typing import Any, Literal

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from promptyard.api.auth import current_caller
from promptyard.api.bodies import Body, DbCount, DbId
from promptyard.api.guards import check_json_value
from promptyard.errors import Unprocessable
from promptyard.prompts import labels, library, transfer, versions
from promptyard.prompts.templates import render_version

api = APIBlueprint(
    "prompts", __name__, url_prefix="/api/v1/prompts", abp_tags=[Tag(name="prompts")], abp_security=[{"bearer": []}]
)

YAML_TYPES = ("application/x-yaml", "application/yaml", "text/yaml", "text/x-yaml")


class Variable(Body):
    name: str = Field(description="The name the template reads.")
    type: Literal["string", "integer", "number", "boolean", "list"] = "string"
    required: bool = True
    default: Any = None
    description: str = ""


class PromptCreate(Body):
    name: str = Field(description="Unique name, [a-z0-9][a-z0-9._-]{0,99}.")
    template: str = Field(description="Jinja2 template text.")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    task_type: str | None = Field(None, max_length=50)
    variables: list[Variable] | None = Field(
        None, description="Omitted: every name the template reads, as a required string."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Default generation parameters.")
    message: str = ""


class PromptUpdate(Body):
    description: str | None = None
    tags: list[str] | None = None
    task_type: str | None = Field(None, max_length=50)


class VersionCreate(Body):
    template: str
    variables: list[Variable] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    message: str = ""


class LabelSet(Body):
    version: DbId


class RenderBody(Body):
    variables: dict[str, Any] = Field(default_factory=dict)
    version: DbId | None = None
    label: str | None = None


class ListQuery(BaseModel):
    q: str | None = Field(None, description="Search in name, description and the latest template.")
    tag: str | None = None
    archived: bool = Field(False, description="Include archived prompts.")
    limit: int = Field(50, ge=1, le=500)
    offset: DbCount = 0


class PageQuery(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    offset: DbCount = 0


class DiffQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: DbId | None = Field(None, alias="from", description="Older version (default: the one before `to`).")
    to: DbId | None = Field(None, description="Newer version (default: the latest).")


class ExportQuery(BaseModel):
    format: Literal["json", "yaml"] = "json"


class PromptPath(BaseModel):
    name: str


class VersionPath(BaseModel):
    name: str
    number: int


class LabelPath(BaseModel):
    name: str
    label: str


def _author() -> str:
    caller = current_caller()
    return caller.name or (f"key-{caller.key_id}" if caller.key_id else caller.role)


def _variables(items: list[Variable] | None) -> list[dict] | None:
    return None if items is None else [item.model_dump() for item in items]


@api.post("", responses={201: None})
def create_prompt(body: PromptCreate):
    """Create a prompt with its first version (an archived prompt's name restores it, adding a version)."""
    prompt, _ = library.create_prompt(
        body.name,
        body.template,
        description=body.description,
        tags=body.tags,
        task_type=body.task_type,
        variables=_variables(body.variables),
        params=body.params,
        message=body.message,
        author=_author(),
    )
    return library.prompt_to_dict(prompt), 201


@api.get("")
def list_prompts(query: ListQuery):
    """List prompts (archived ones only when asked), searching name, description and template."""
    rows, total = library.list_prompts(
        query.q, query.tag, include_archived=query.archived, limit=query.limit, offset=query.offset
    )
    return {"items": [library.prompt_to_dict(row) for row in rows], "total": total}


@api.get("/export")
def export_library(query: ExportQuery):
    """The whole library, every version and label target, re-importable without loss."""
    document = transfer.export_library()
    if query.format == "yaml":
        return Response(transfer.dump(document, "yaml"), mimetype="application/x-yaml")
    return document


@api.post("/import")
def import_library():
    """Import an export (JSON or YAML by Content-Type); all or nothing."""
    fmt = "yaml" if request.mimetype in YAML_TYPES else "json"
    document = transfer.load(request.get_data(), fmt)
    check_json_value(document)  # the body is parsed here, not by get_json(), so the request guard's check is run here
    return transfer.import_library(document, actor=_author())


@api.get("/<name>")
def get_prompt(path: PromptPath):
    """A prompt with its latest version and labels."""
    return library.prompt_to_dict(library.get_prompt(path.name))


@api.patch("/<name>")
def update_prompt(path: PromptPath, body: PromptUpdate):
    """Change a prompt's description, tags or task type."""
    prompt = library.update_prompt(path.name, description=body.description, tags=body.tags, task_type=body.task_type)
    return library.prompt_to_dict(prompt)


@api.delete("/<name>", responses={204: None})
def archive_prompt(path: PromptPath):
    """Archive a prompt: hidden from lists, history kept."""
    library.archive_prompt(path.name)
    return "", 204


@api.post("/<name>/versions", responses={201: None, 200: None})
def add_version(path: PromptPath, body: VersionCreate):
    """Add a version; identical content to the latest returns that version with 200."""
    row, created = versions.add_version(
        path.name,
        body.template,
        variables=_variables(body.variables),
        params=body.params,
        message=body.message,
        author=_author(),
    )
    return library.version_to_dict(row), 201 if created else 200


@api.get("/<name>/versions")
def list_versions(path: PromptPath, query: PageQuery):
    """Versions, newest first."""
    rows, total = versions.list_versions(path.name, limit=query.limit, offset=query.offset)
    return {"items": [library.version_to_dict(row) for row in rows], "total": total}


@api.get("/<name>/versions/<int:number>")
def get_version(path: VersionPath):
    """One version."""
    return library.version_to_dict(library.resolve_version(path.name, version=path.number))


@api.get("/<name>/diff")
def diff(path: PromptPath, query: DiffQuery):
    """A unified diff between two versions."""
    return versions.diff_versions(path.name, query.from_, query.to)


@api.get("/<name>/labels/<label>")
def get_label(path: LabelPath):
    """A label with its target and history."""
    return labels.get_label_dict(path.name, path.label)


@api.put("/<name>/labels/<label>")
def set_label(path: LabelPath, body: LabelSet):
    """Point a label at a version (its history is kept)."""
    return labels.label_to_dict(labels.set_label(path.name, path.label, body.version, actor=_author()))


@api.post("/<name>/labels/<label>/rollback")
def rollback_label(path: LabelPath):
    """Move a label back to the version it pointed to before."""
    return labels.label_to_dict(labels.rollback_label(path.name, path.label, actor=_author()))


@api.post("/<name>/render")
def render(path: PromptPath, body: RenderBody):
    """Render a version (by number, label, or the latest) with variables."""
    if body.version is not None and body.label is not None:
        raise Unprocessable("Give either 'version' or 'label', not both.", code="version_and_label")
    row = library.resolve_version(path.name, version=body.version, label=body.label)
    return {"text": render_version(row, body.variables), "version": row.number}

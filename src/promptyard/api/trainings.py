"""Training over HTTP: preview training data, start a LoRA fine-tuning (202), follow, cancel and resume it, and
export a model (adapter or merged weights with a model card, optionally pushed to the Hub)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from promptyard.api.auth import require_role
from promptyard.api.bodies import Body
from promptyard.training import data as training_data
from promptyard.training import runs

api = APIBlueprint("trainings", __name__, url_prefix="/api/v1", abp_tags=[Tag(name="training")],
                   abp_security=[{"bearer": []}])


class DataQuery(BaseModel):
    format: Literal["sft", "kto", "dpo"] = Field("sft", description="TRL format of the rows.")
    source: str = Field("history,evals", description="Comma-separated: history, evals, dataset.")
    prompt: str | None = None
    version: int | None = Field(None, ge=1)
    label: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_rating: int = Field(4, ge=1, le=5)
    max_bad_rating: int = Field(2, ge=1, le=5)
    dataset: str | None = None
    limit: int | None = Field(None, ge=1, description="Only the dataset's first N tasks (source dataset).")
    rows: int = Field(50, ge=0, le=10000, description="Rows to include in the answer (counts cover all).")


class TrainingCreate(Body):
    base_model: str = Field(min_length=1, max_length=100, description="A registered transformers model.")
    name: str = Field(min_length=1, max_length=100, description="Name of the model the training registers.")
    method: Literal["sft", "kto", "dpo"] = Field("sft", description="TRL trainer: SFT, KTO or DPO.")
    data: dict[str, Any] = Field(default_factory=dict, description="Where the rows come from (see DataSpec).")
    params: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters, PEFT/TRL names.")


class TrainingPath(BaseModel):
    training_id: int


class Page(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0)


@api.get("/training/data")
def training_data_preview(query: DataQuery):
    """Training rows built from history, evaluations or a dataset: counts per source and the first rows."""
    spec = query.model_dump(exclude={"format", "rows"}, exclude_none=True)
    spec["source"] = [part.strip() for part in query.source.split(",") if part.strip()]
    built = training_data.build(query.format, spec, home=current_app.config.get("PROMPTYARD_HOME"))
    return {**built.summary(), "items": built.rows[:query.rows]}


@api.post("/trainings", responses={202: None})
@require_role("editor")
def create_training(body: TrainingCreate):
    """Start a LoRA fine-tuning of a registered model in the background."""
    row = runs.create_training(body.base_model, body.name, body.method, body.data, body.params)
    return runs.training_to_dict(row), 202


@api.get("/trainings")
def list_trainings(query: Page):
    """Trainings, newest first."""
    rows, total = runs.list_trainings(query.limit, query.offset)
    return {"items": [runs.training_to_dict(row) for row in rows], "total": total}


@api.get("/trainings/<int:training_id>")
def get_training(path: TrainingPath):
    """One training: status, progress, loss per step, the model it registers, the error if it failed."""
    return runs.training_to_dict(runs.get_training(path.training_id))


@api.post("/trainings/<int:training_id>/cancel")
@require_role("editor")
def cancel_training(path: TrainingPath):
    """Cancel a queued or running training (a running one stops at its next step, after a checkpoint)."""
    return runs.training_to_dict(runs.cancel_training(path.training_id))


@api.post("/trainings/<int:training_id>/resume", responses={202: None})
@require_role("editor")
def resume_training(path: TrainingPath):
    """Continue a cancelled or failed training from its last checkpoint."""
    return runs.training_to_dict(runs.resume_training(path.training_id)), 202


class ExportBody(Body):
    to: str = Field(min_length=1, max_length=1000, description="A new or empty folder on the server.")
    merge: bool = Field(False, description="Merge the adapter into the base weights instead of exporting it.")
    push: str | None = Field(None, max_length=200, description="Hub repository 'org/name' to push the folder to.")


class ModelPath(BaseModel):
    name: str


@api.post("/models/<name>/export")
@require_role("admin")
def export_model(path: ModelPath, body: ExportBody):
    """Export a model: adapter or merged weights, tokenizer and a model card; push to the Hub when asked."""
    from promptyard.training.export import export_model as export

    return export(path.name, body.to, merge=body.merge, push=body.push)


class PromptsPush(Body):
    repo: str = Field(min_length=1, max_length=200, description="Hub dataset repository 'org/name'.")


@api.post("/hub/prompts")
@require_role("admin")
def push_prompts(body: PromptsPush):
    """Push the prompt library to a Hub dataset repository (prompts.jsonl, the importable YAML, a dataset card)."""
    from promptyard.training.hub import push_prompt_library

    return push_prompt_library(body.repo)

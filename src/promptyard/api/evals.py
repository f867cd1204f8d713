"""Evaluation runs over HTTP: start one (202), follow it, list its samples, compare two; list and register the
datasets runs use."""

from __future__ import annotations

from typing import Literal

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from promptyard.api.auth import require_role
from promptyard.api.bodies import Body, DbCount, DbId
from promptyard.evals import datasets, runs

api = APIBlueprint(
    "evals", __name__, url_prefix="/api/v1/evals", abp_tags=[Tag(name="evals")], abp_security=[{"bearer": []}]
)


class EvalCreate(Body):
    dataset: str = Field(
        min_length=1, max_length=100, description="humaneval, mbpp (sanitized), mbpp-full, or a registered dataset."
    )
    model: str = Field(min_length=1, max_length=100, description="A registered model name.")
    prompt: str | None = Field(None, max_length=100, description="Library prompt that wraps each task.")
    version: DbId | None = None
    label: str | None = Field(None, max_length=100)
    n: int = Field(1, ge=1, le=1000, description="Completions per task.")
    k: list[DbId] = Field(default_factory=lambda: [1], min_length=1, description="pass@k values to report.")
    params: dict = Field(
        default_factory=dict,
        description="Generation parameters for every sample (temperature, top_p, max_new_tokens, seed, stop...). "
        "A temperature above 0 turns sampling on; n > 1 with greedy decoding is refused (422 greedy_with_n).",
    )
    limit: DbId | None = Field(None, description="Only the first N tasks.")
    mode: Literal["completion", "chat"] = "completion"
    timeout: float = Field(3.0, gt=0, le=60, description="Seconds per sample in the sandbox.")
    dataset_path: str | None = Field(
        None, min_length=1, max_length=1000,
        description="A JSONL copy of the dataset on the server (MBPP offline, say), like the CLI's --dataset-path.",
    )


class DatasetCreate(Body):
    name: str = Field(max_length=100, description="Lowercase letters, digits, '-', '_' or '.'; not a built-in name.")
    jsonl: str = Field(
        description="The tasks as JSONL text, one JSON object per line, exactly what "
        "`promptyard eval register-dataset` reads from a file: task_id, prompt, tests or test_list, entry_point, "
        "optional canonical_solution."
    )


class RunPath(BaseModel):
    run_id: int


class Page(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    offset: DbCount = 0


class CompareQuery(BaseModel):
    a: DbId
    b: DbId


@api.post("", responses={202: None})
@require_role("editor")
def create_eval(body: EvalCreate):
    """Start an evaluation run in the background."""
    run = runs.create_run(
        body.dataset, body.model, prompt=body.prompt, version=body.version, label=body.label, n=body.n,
        k=body.k, params=body.params, limit=body.limit, mode=body.mode, timeout=body.timeout,
        dataset_path=body.dataset_path,
    )
    return runs.run_to_dict(run), 202


@api.post("/<int:run_id>/resume", responses={202: None})
@require_role("editor")
def resume_eval(path: RunPath):
    """Take up a stopped run where it stopped: failed (the backend went down), or finished with generation
    failures; what it has is kept, what is missing or failed is generated. 409 while it runs or when complete."""
    return runs.run_to_dict(runs.resume_run(path.run_id)), 202


@api.get("")
def list_evals(query: Page):
    """Evaluation runs, newest first."""
    rows, total = runs.list_runs(query.limit, query.offset)
    return {"items": runs.runs_to_dicts(rows), "total": total}


@api.get("/compare")
def compare_evals(query: CompareQuery):
    """Per-task differences between two finished runs and a paired significance test."""
    from promptyard.evals.compare import compare_runs

    return compare_runs(query.a, query.b)


@api.get("/datasets")
def list_datasets():
    """The datasets a run can use: name, kind (builtin or custom), tasks (null when unknown offline), description."""
    found = datasets.list_datasets(current_app.config["PROMPTYARD_HOME"])
    return {"items": found, "total": len(found)}


@api.post("/datasets", responses={201: None})
@require_role("editor")
def register_dataset(body: DatasetCreate):
    """Validate JSONL tasks like `promptyard eval register-dataset` and register them under a new name."""
    dataset = datasets.register_custom_text(current_app.config["PROMPTYARD_HOME"], body.name, body.jsonl)
    return datasets.custom_summary(dataset), 201


@api.get("/<int:run_id>")
def get_eval(path: RunPath):
    """One run with its status, progress (samples generated and executed, phase), pass@k and each task's pass@k."""
    return runs.run_to_dict(runs.get_run(path.run_id), per_task=True)


@api.get("/<int:run_id>/samples")
def list_eval_samples(path: RunPath, query: Page):
    """The run's samples: task, completion, verdict."""
    rows, total = runs.list_samples(path.run_id, query.limit, query.offset)
    return {"items": [runs.sample_to_dict(r) for r in rows], "total": total}

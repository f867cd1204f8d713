"""A/B experiments: create, list, show, stop, assign a subject, and results with significance."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from promptyard.api.bodies import Body, DbCount, DbId
from promptyard.prompts import experiments

api = APIBlueprint(
    "experiments",
    __name__,
    url_prefix="/api/v1/experiments",
    abp_tags=[Tag(name="experiments")],
    abp_security=[{"bearer": []}],
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class ArmBody(Body):
    version: DbId = Field(description="A version number of the experiment's prompt.")
    weight: float = Field(1.0, ge=0, le=experiments.MAX_WEIGHT,
                          description="Relative share of subjects, 0 to 1e6 (weights may not all be 0).")


class ExperimentCreate(Body):
    name: str = Field(pattern=NAME_PATTERN, description="Unique experiment name.")
    prompt: str = Field(min_length=1, max_length=100, description="Name of the prompt whose versions compete.")
    arms: list[ArmBody] = Field(description="At least two arms, each a distinct version with a weight.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level for declaring a winner.")
    metric: Literal["success_rate", "mean_rating"] = Field("success_rate", description="What picks the winner.")
    description: str = Field("", max_length=2000)


class ExperimentPath(BaseModel):
    name: str


class ExperimentListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    status: Literal["running", "stopped"] | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: DbCount = 0


class AssignQuery(BaseModel):
    subject: str = Field(min_length=1, max_length=255, description="Who is assigned: a user, session or request id.")


class AssignBody(Body):
    subject: str = Field(min_length=1, max_length=255, description="Who is assigned: a user, session or request id.")


@api.post("", responses={201: None})
def create_experiment(body: ExperimentCreate):
    """Start an experiment; one running experiment per prompt."""
    row = experiments.create_experiment(
        body.name,
        body.prompt,
        [arm.model_dump() for arm in body.arms],
        alpha=body.alpha,
        metric=body.metric,
        description=body.description,
    )
    return experiments.experiment_to_dict(row), 201


@api.get("")
def list_experiments(query: ExperimentListQuery):
    """List experiments, newest first."""
    rows, total = experiments.list_experiments(
        prompt=query.prompt, status=query.status, limit=query.limit, offset=query.offset
    )
    return {"items": [experiments.experiment_to_dict(row) for row in rows], "total": total}


@api.get("/<name>")
def get_experiment(path: ExperimentPath):
    """One experiment with its arms."""
    return experiments.experiment_to_dict(experiments.get_experiment(path.name))


@api.post("/<name>/stop")
def stop_experiment(path: ExperimentPath):
    """Stop an experiment: no new subjects; results stay."""
    return experiments.experiment_to_dict(experiments.stop_experiment(path.name))


@api.get("/<name>/assign")
def peek_assignment(path: ExperimentPath, query: AssignQuery):
    """The version this subject sees (or would see once assigned); read-only, so a viewer may ask."""
    return {"version": experiments.peek(path.name, query.subject)}


@api.post("/<name>/assign")
def assign(path: ExperimentPath, body: AssignBody):
    """Assign the subject its arm and record it (counted in the results); the same subject always gets the same
    arm, which is the one GET answers."""
    return {"version": experiments.assign(path.name, body.subject)}


@api.get("/<name>/results")
def results(path: ExperimentPath):
    """Per-arm counts and rates, the p-value of the chosen metric's test, and the winner when significant."""
    return experiments.experiment_results(path.name)

"""Sticky experiment arms: a stable hash of experiment name and subject onto the arms' cumulative weights.

Used until (or unless) `promptyard.prompts.experiments.assign` exists; then that one decides.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from promptyard.db import db
from promptyard.db.models import Experiment, ExperimentArm, ExperimentAssignment, PromptVersion
from promptyard.errors import NotFound, Unprocessable
from promptyard.optional import import_optional


def get_experiment(name: str) -> Experiment:
    row = db.session.scalar(select(Experiment).where(Experiment.name == name))
    if row is None:
        raise NotFound(f"No experiment named '{name}'.", code="experiment_not_found", details={"experiment": name})
    return row


def assign_version(experiment: Experiment, subject: str) -> PromptVersion:
    """The prompt version this subject gets in this experiment (the same one every time)."""
    owner = import_optional("promptyard.prompts.experiments")
    if owner is not None and hasattr(owner, "assign"):
        return _as_version(experiment, owner.assign(experiment.name, subject))
    return sticky_arm(experiment, subject).version


def bucket(experiment_name: str, subject: str) -> float:
    """A point in [0, 1) that depends only on the experiment's name and the subject."""
    digest = hashlib.sha256(f"{experiment_name}\x00{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_arm(arms: list[ExperimentArm], point: float) -> ExperimentArm:
    """The arm whose slice of the cumulative weights holds `point` (a fraction of the total weight)."""
    total = sum(max(arm.weight, 0.0) for arm in arms)
    if total <= 0:
        raise Unprocessable("The experiment's arms have no positive weight.", code="experiment_has_no_arms")
    target, cumulative = point * total, 0.0
    for arm in arms:
        cumulative += max(arm.weight, 0.0)
        if target < cumulative:
            return arm
    return arms[-1]


def sticky_arm(experiment: Experiment, subject: str) -> ExperimentArm:
    """The recorded arm for this subject, or a newly hashed one, recorded."""
    existing = _recorded(experiment.id, subject)
    if existing is not None:
        return existing.arm
    arms = list(experiment.arms)
    if not arms:
        raise Unprocessable(f"Experiment '{experiment.name}' has no arms.", code="experiment_has_no_arms")
    arm = pick_arm(arms, bucket(experiment.name, subject))
    db.session.add(ExperimentAssignment(experiment_id=experiment.id, arm_id=arm.id, subject=subject))
    try:
        db.session.commit()
    except IntegrityError:  # the same subject was assigned concurrently; that record wins
        db.session.rollback()
        return _recorded(experiment.id, subject).arm
    return arm


def _recorded(experiment_id: int, subject: str) -> ExperimentAssignment | None:
    return db.session.scalar(
        select(ExperimentAssignment).where(
            ExperimentAssignment.experiment_id == experiment_id, ExperimentAssignment.subject == subject
        )
    )


def _as_version(experiment: Experiment, assigned: Any) -> PromptVersion:
    """Accept what an `assign` returns: an arm, a version, a version number or {"version": n}."""
    if isinstance(assigned, ExperimentArm):
        return assigned.version
    if isinstance(assigned, PromptVersion):
        return assigned
    number = assigned.get("version") if isinstance(assigned, dict) else assigned
    version = db.session.scalar(
        select(PromptVersion).where(PromptVersion.prompt_id == experiment.prompt_id, PromptVersion.number == number)
    )
    if version is None:
        raise NotFound(f"Experiment '{experiment.name}' assigned a version that does not exist.",
                       code="version_not_found")
    return version

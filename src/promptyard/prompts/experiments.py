"""A/B experiments: weighted arms over prompt versions, sticky per-subject assignment, recorded."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from promptyard.db import db, utcnow
from promptyard.db.eval_queries import pass_rate_by_version
from promptyard.db.models import (
    Execution,
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    Feedback,
    Prompt,
)
from promptyard.errors import Conflict, NotFound, Unprocessable
from promptyard.prompts.library import get_version
from promptyard.prompts.experiment_stats import compare_ratings, compare_rates

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
# Weights are relative shares: a million to one is as uneven as a split gets, and sums of such weights stay exact
# (1e308 + 1e308 overflowed to inf and sent every subject to the last arm).
MAX_WEIGHT = 1_000_000.0
METRICS = ("success_rate", "mean_rating")


def create_experiment(
    name: str,
    prompt: str,
    arms: list[dict[str, Any]],
    *,
    alpha: float = 0.05,
    metric: str = "success_rate",
    description: str = "",
) -> Experiment:
    """Create a running experiment over versions of `prompt`; arms are `{"version": n, "weight": w}`."""
    _check_fields(name, alpha, metric)
    _check_arm_shape(arms)
    prompt_row = db.session.scalar(select(Prompt).where(Prompt.name == prompt).with_for_update())
    if prompt_row is None or prompt_row.archived:
        raise NotFound(f"No prompt named '{prompt}'.", code="prompt_not_found", details={"prompt": prompt})
    if db.session.scalar(select(Experiment.id).where(Experiment.name == name)) is not None:
        raise Conflict(f"An experiment named '{name}' already exists.", code="experiment_exists", details={"name": name})
    running = db.session.scalar(
        select(Experiment).where(Experiment.prompt_id == prompt_row.id, Experiment.status == "running")
    )
    if running is not None:
        raise Conflict(
            f"Prompt '{prompt}' already has a running experiment ('{running.name}'); stop it first.",
            code="experiment_already_running",
            details={"prompt": prompt, "experiment": running.name},
        )
    experiment = Experiment(
        name=name, prompt_id=prompt_row.id, alpha=alpha, metric=metric, description=description, status="running"
    )
    for position, arm in enumerate(arms):
        version = get_version(prompt_row, arm["version"])
        experiment.arms.append(ExperimentArm(version_id=version.id, weight=float(arm["weight"]), position=position))
    db.session.add(experiment)
    try:
        db.session.commit()
    except IntegrityError as exc:  # a concurrent create took the name between our check and the insert
        db.session.rollback()
        raise Conflict(f"An experiment named '{name}' already exists.", code="experiment_exists") from exc
    return experiment


def _check_fields(name: str, alpha: float, metric: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise Unprocessable(
            f"Experiment name '{name}' is not allowed: use lowercase letters, digits, '.', '_' or '-' "
            "(up to 100, starting with a letter or digit).",
            code="invalid_name",
        )
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise Unprocessable(f"alpha must be between 0 and 1 (exclusive), not {alpha}.", code="invalid_alpha")
    if metric not in METRICS:
        raise Unprocessable(f"Unknown metric '{metric}'; use one of {', '.join(METRICS)}.", code="invalid_metric")


def _check_arm_shape(arms: list[dict[str, Any]]) -> None:
    if not isinstance(arms, list) or not all(_is_arm(arm) for arm in arms):
        raise Unprocessable(
            "arms must be a list of {\"version\": integer, \"weight\": number}.", code="invalid_arms"
        )
    if len(arms) < 2:
        raise Unprocessable("An experiment needs at least 2 arms.", code="too_few_arms")
    versions = [arm["version"] for arm in arms]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise Unprocessable(
            f"Each version may appear in one arm only; repeated: {', '.join(map(str, duplicates))}.",
            code="duplicate_arm",
            details={"versions": duplicates},
        )
    weights = [arm["weight"] for arm in arms]
    if any(not math.isfinite(w) or w < 0 or w > MAX_WEIGHT for w in weights):
        raise Unprocessable(f"Arm weights must be numbers from 0 to {MAX_WEIGHT:g}.", code="invalid_weight",
                            details={"max_weight": MAX_WEIGHT})
    if sum(weights) <= 0:
        raise Unprocessable("Arm weights must not sum to zero.", code="invalid_weight")


def _is_arm(arm: Any) -> bool:
    return (
        isinstance(arm, dict)
        and isinstance(arm.get("version"), int)
        and not isinstance(arm.get("version"), bool)
        and isinstance(arm.get("weight"), (int, float))
        and not isinstance(arm.get("weight"), bool)
    )


def get_experiment(name: str) -> Experiment:
    experiment = db.session.scalar(select(Experiment).where(Experiment.name == name))
    if experiment is None:
        raise NotFound(f"No experiment named '{name}'.", code="experiment_not_found", details={"name": name})
    return experiment


def list_experiments(
    *, prompt: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Experiment], int]:
    """A page of experiments, newest first, and the total matching."""
    query = select(Experiment)
    if prompt is not None:
        query = query.join(Prompt, Prompt.id == Experiment.prompt_id).where(Prompt.name == prompt)
    if status is not None:
        query = query.where(Experiment.status == status)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(query.order_by(Experiment.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def stop_experiment(name: str) -> Experiment:
    """Stop a running experiment; its assignments and results stay."""
    experiment = get_experiment(name)
    if experiment.status != "running":
        raise Conflict(f"Experiment '{name}' is already stopped.", code="experiment_stopped")
    experiment.status = "stopped"
    experiment.stopped_at = utcnow()
    db.session.commit()
    return experiment


def bucket(experiment_name: str, subject: str) -> float:
    """A stable point in [0, 1) for this subject in this experiment (same on every process and machine)."""
    digest = hashlib.sha256(f"{experiment_name}\x00{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_arm(arms: list[ExperimentArm], point: float) -> ExperimentArm:
    """The arm whose slice of the cumulative weights holds `point` (zero-weight arms hold none)."""
    total = sum(arm.weight for arm in arms)
    target = point * total
    cumulative = 0.0
    for arm in arms:
        cumulative += arm.weight
        if arm.weight > 0 and target < cumulative:
            return arm
    return next(arm for arm in reversed(arms) if arm.weight > 0)


def _check_subject(subject: str) -> None:
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 255:
        raise Unprocessable("subject must be a non-empty string of at most 255 characters.", code="invalid_subject")


def peek_arm(name: str, subject: str) -> ExperimentArm:
    """The subject's arm without recording it: the recorded one, else the one assign_arm would record."""
    return _arm_for(name, subject)[1]


def _arm_for(name: str, subject: str) -> tuple[Experiment, ExperimentArm, bool]:
    """The experiment, the subject's arm and whether it is recorded already (else the hash picks it, which a
    stopped experiment refuses)."""
    _check_subject(subject)
    experiment = get_experiment(name)
    existing = _recorded_arm(experiment.id, subject)
    if existing is not None:
        return experiment, existing, True
    _check_running(experiment)
    return experiment, pick_arm(list(experiment.arms), bucket(experiment.name, subject)), False


def _check_running(experiment: Experiment) -> None:
    if experiment.status != "running":
        raise Conflict(
            f"Experiment '{experiment.name}' is stopped and takes no new subjects.",
            code="experiment_stopped",
            details={"name": experiment.name},
        )


def assign_arm(name: str, subject: str) -> ExperimentArm:
    """The subject's arm: recorded on first sight, the same one on every later call."""
    experiment, arm, recorded = _arm_for(name, subject)
    if recorded:
        return arm
    try:
        with db.session.begin_nested():
            db.session.add(ExperimentAssignment(experiment_id=experiment.id, arm_id=arm.id, subject=subject))
        db.session.commit()
    except IntegrityError:
        # Another request recorded this subject first; the hash makes its arm the same as ours.
        db.session.rollback()
        return _recorded_arm(experiment.id, subject) or arm
    return arm


def assign(name: str, subject: str) -> int:
    """The version number the subject sees in experiment `name`, recorded."""
    return assign_arm(name, subject).version.number


def peek(name: str, subject: str) -> int:
    """The version number the subject sees (or would see) in experiment `name`; writes nothing."""
    return peek_arm(name, subject).version.number


def _recorded_arm(experiment_id: int, subject: str) -> ExperimentArm | None:
    return db.session.scalar(
        select(ExperimentArm)
        .join(ExperimentAssignment, ExperimentAssignment.arm_id == ExperimentArm.id)
        .where(ExperimentAssignment.experiment_id == experiment_id, ExperimentAssignment.subject == subject)
    )


def experiment_to_dict(experiment: Experiment) -> dict[str, Any]:
    return {
        "id": experiment.id,
        "name": experiment.name,
        "prompt": experiment.prompt.name,
        "status": experiment.status,
        "metric": experiment.metric,
        "alpha": experiment.alpha,
        "description": experiment.description,
        "arms": [{"version": arm.version.number, "weight": arm.weight} for arm in experiment.arms],
        "created_at": experiment.created_at.isoformat(),
        "stopped_at": experiment.stopped_at.isoformat() if experiment.stopped_at else None,
    }


# Statuses that say how a run went; `running` and `cancelled` say nothing about the version.
COUNTED_STATUSES = ("succeeded", "failed")


def experiment_results(name: str) -> dict[str, Any]:
    """Per-arm counts and rates, and significance tests on success rate and rating."""
    experiment = get_experiment(name)
    arms = list(experiment.arms)
    version_ids = [arm.version_id for arm in arms]
    assignments = dict(
        db.session.execute(
            select(ExperimentAssignment.arm_id, func.count())
            .where(ExperimentAssignment.experiment_id == experiment.id)
            .group_by(ExperimentAssignment.arm_id)
        ).all()
    )
    outcomes: dict[tuple[int, str], int] = {
        (version_id, status): count
        for version_id, status, count in db.session.execute(
            select(Execution.version_id, Execution.status, func.count())
            .where(Execution.experiment_id == experiment.id, Execution.status.in_(COUNTED_STATUSES))
            .group_by(Execution.version_id, Execution.status)
        )
    }
    ratings: dict[int, list[int]] = {version_id: [] for version_id in version_ids}
    for version_id, rating in db.session.execute(
        select(Execution.version_id, Feedback.rating)
        .join(Feedback, Feedback.execution_id == Execution.id)
        .where(Execution.experiment_id == experiment.id, Execution.status.in_(COUNTED_STATUSES))
        .order_by(Feedback.id)
    ):
        ratings.setdefault(version_id, []).append(rating)
    pass_rates = _pass_rates(version_ids)

    rows = []
    for arm in arms:
        successes = outcomes.get((arm.version_id, "succeeded"), 0)
        executions = successes + outcomes.get((arm.version_id, "failed"), 0)
        arm_ratings = ratings.get(arm.version_id, [])
        rows.append(
            {
                "version": arm.version.number,
                "weight": arm.weight,
                "assignments": assignments.get(arm.id, 0),
                "executions": executions,
                "successes": successes,
                "success_rate": successes / executions if executions else None,
                "ratings": len(arm_ratings),
                "mean_rating": sum(arm_ratings) / len(arm_ratings) if arm_ratings else None,
                "pass_rate": pass_rates.get(arm.version_id),
            }
        )
    by_rate = _rate_test(rows, experiment.alpha)
    by_rating = _rating_test(rows, [ratings.get(arm.version_id, []) for arm in arms], experiment.alpha)
    primary = by_rate if experiment.metric == "success_rate" else by_rating
    return {
        "experiment": experiment.name,
        "prompt": experiment.prompt.name,
        "status": experiment.status,
        "metric": experiment.metric,
        "alpha": experiment.alpha,
        "arms": rows,
        "test": primary["test"],
        "p_value": primary["p_value"],
        "sample_sizes": primary["sample_sizes"],
        "significant": primary["significant"],
        "winner": primary["winner"],
        "tests": {"success_rate": by_rate, "mean_rating": by_rating},
    }


def _rate_test(rows: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    tested = [row for row in rows if row["executions"] > 0]
    result = compare_rates([row["successes"] for row in tested], [row["executions"] for row in tested])
    sizes = [{"version": row["version"], "n": row["executions"]} for row in tested]
    return _verdict(result, sizes, {row["version"]: row["success_rate"] for row in tested}, alpha)


def _rating_test(rows: list[dict[str, Any]], samples: list[list[int]], alpha: float) -> dict[str, Any]:
    tested = [(row, sample) for row, sample in zip(rows, samples) if sample]
    result = compare_ratings([sample for _, sample in tested])
    sizes = [{"version": row["version"], "n": len(sample)} for row, sample in tested]
    return _verdict(result, sizes, {row["version"]: row["mean_rating"] for row, _ in tested}, alpha)


def _verdict(
    result: dict[str, Any], sizes: list[dict[str, int]], scores: dict[int, float], alpha: float
) -> dict[str, Any]:
    """Attach sample sizes, significance and the winner (the best arm, only when the test is significant)."""
    significant = result["p_value"] is not None and result["p_value"] < alpha
    winner = None
    if significant:
        best = max(scores.values())
        leaders = [version for version, score in scores.items() if score == best]
        winner = leaders[0] if len(leaders) == 1 else None
    return {**result, "sample_sizes": sizes, "significant": significant, "winner": winner}


def _pass_rates(version_ids: list[int]) -> dict[int, float | None]:
    """Evaluation pass rate per version that finished evaluation runs have scored."""
    scored = pass_rate_by_version(version_ids)
    return {
        version_id: counts["passed"] / counts["total"]
        for version_id, counts in scored.items()
        if counts.get("total")
    }
